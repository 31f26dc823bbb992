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

/// Waits for a child process that was asked to stop (SIGTERM, SIGINT, a fault injector, its own
/// `--exit-after`) and returns its output. Bounded, 300 one-second attempts: a process whose
/// shutdown hangs then fails its test, which says so and kills it, instead of holding the suite
/// until CI's time budget ends the whole run with nothing to show. Output pipes are read while
/// waiting, so a chatty process cannot block on a full pipe.
pub fn wait_exit(child: std::process::Child, what: &str) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    for _ in 0..300 {
        match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(Ok(out)) => return out,
            Ok(Err(e)) => panic!("{what}: waiting for process {pid}: {e}"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the waiting thread died"),
        }
    }
    let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    panic!("{what}: process {pid} did not exit after 300 one-second waits; killed it with SIGKILL");
}

/// A name unique to this test run, so reruns against long-lived services never collide.
pub fn unique(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xff_ffff)
}

/// The SASL/SCRAM + TLS broker with ACLs enforced (`scripts/testenv.sh up kafka-secure`), and Kafka's
/// own admin tools run against it as its super user.
#[derive(Debug, Clone)]
pub struct SecureKafka {
    /// `host:port` of its SASL_SSL listener.
    pub bootstrap: String,
    /// The CA certificate (PEM) that signed the broker's certificate.
    pub ca: String,
    admin_config: String,
    java: String,
    lib: String,
}

impl SecureKafka {
    /// The broker from the environment, by the missing-service rule of [`service`].
    pub fn from_env(test: &str) -> Option<Self> {
        Some(Self {
            bootstrap: service("KAFKA_SECURE_BOOTSTRAP", test)?,
            ca: service("KAFKA_SECURE_CA", test)?,
            admin_config: service("KAFKA_SECURE_ADMIN_CONFIG", test)?,
            java: service("KAFKA_JAVA", test)?,
            lib: service("KAFKA_LIB", test)?,
        })
    }

    /// Runs one of Kafka's admin tools (e.g. `org.apache.kafka.tools.AclCommand`) as the super user
    /// and panics with its output when it fails.
    pub fn admin_tool(&self, class: &str, args: &[String]) -> String {
        let out = std::process::Command::new(&self.java)
            .arg("-Xmx256m")
            .arg("-cp")
            .arg(format!("{}/*", self.lib))
            .arg(class)
            .args(["--bootstrap-server", &self.bootstrap, "--command-config", &self.admin_config])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {class}: {e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{class} {args:?} failed: {text}");
        text
    }

    /// Creates (or resets) a SCRAM-SHA-512 user.
    pub fn create_user(&self, user: &str, password: &str) {
        self.admin_tool(
            "org.apache.kafka.tools.ConfigCommand",
            &[
                "--alter".into(),
                "--add-config".into(),
                format!("SCRAM-SHA-512=[password={password}]"),
                "--entity-type".into(),
                "users".into(),
                "--entity-name".into(),
                user.into(),
            ],
        );
    }

    /// Applies one `kafka-acls.sh` argument list (everything after `--command-config <file>`).
    pub fn kafka_acls(&self, args: &[String]) -> String {
        self.admin_tool("org.apache.kafka.tools.AclCommand", args)
    }

    /// librdkafka properties for `user` over SASL_SSL, as a stage gets them from
    /// `[kafka] properties` in its configuration.
    pub fn client_properties(&self, user: &str, password: &str) -> std::collections::BTreeMap<String, String> {
        [
            ("bootstrap.servers", self.bootstrap.as_str()),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", user),
            ("sasl.password", password),
            ("ssl.ca.location", self.ca.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
