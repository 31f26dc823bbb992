//! Shared helpers for geostream's integration and end-to-end tests, which run against real
//! services started by `scripts/testenv.sh` (Kafka, Elasticsearch, OpenSearch, Mosquitto,
//! kube-apiserver, helm). The tests themselves live in `integration/` as one test binary.
//!
//! A test that needs a service reads its address from the environment (`scripts/testenv.sh env`).
//! When the variable is missing the test fails with a message saying how to start the service: a
//! missing service is never a pass. Only when a developer opts out explicitly with
//! `GEOSTREAM_ALLOW_MISSING_SERVICES=1` (refused under `CI=true`) does a test report itself as
//! NOT RUN and return.

use std::path::PathBuf;

/// The address or path of a service from the environment, or `None` when the developer explicitly
/// allowed missing services (outside CI); panics with instructions otherwise.
pub fn service(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            let allowed = std::env::var("GEOSTREAM_ALLOW_MISSING_SERVICES").is_ok_and(|v| v == "1");
            if allowed && !in_ci {
                eprintln!("NOT RUN: {test}: {var} is not set (GEOSTREAM_ALLOW_MISSING_SERVICES=1)");
                None
            } else {
                panic!(
                    "{test}: {var} is not set, so its service is not available. Start the test services with \
                     `./scripts/testenv.sh up && eval \"$(./scripts/testenv.sh env)\"`, or run `./scripts/test.sh`."
                )
            }
        }
    }
}

/// The directory of the package whose tests are running, read when they run: CI builds in a cached
/// target directory from a fresh clone each time, so a path compiled in (`env!`) can name an
/// earlier clone when cargo reuses an unchanged crate's artifacts.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// The repository root (tests read `charts/`, `tests/data/` from it).
pub fn repo_root() -> PathBuf {
    let package = package_dir();
    package.ancestors().find(|d| d.join("scripts/testenv.sh").is_file()).map(PathBuf::from).unwrap_or(package)
}

/// Where tests write reports other tools or people read afterwards (e.g. the geo feature matrix).
pub fn report_dir() -> PathBuf {
    let dir = repo_root().join("target").join("test-reports");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A name unique to this test run, so reruns against long-lived services never collide.
pub fn unique(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xff_ffff)
}
