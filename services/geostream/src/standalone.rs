//! `geostream standalone`: every stage in one process on an embedded Kafka-compatible broker.
//!
//! The stages are the same code as in a deployment and still speak Kafka through librdkafka; only
//! the broker is in the process. It listens where `kafka.bootstrap` points, so the CLI with the
//! same configuration (`geostream feeds register`, `fences apply`, ...) talks to it as to any
//! Kafka. Everything lives under one data directory: `broker/` (the broker's log), `ingest/` (the
//! spool), `process/` (checkpoints) and `archive/` (GeoParquet, the store the API answers from
//! unless `--elasticsearch` is given).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::demo::{self, DemoPlan};
use crate::{CliError, StandaloneArgs, config, runtime, serve_api, serve_ingest, serve_process, serve_sink};

/// Runs every stage until Ctrl-C/SIGTERM, `--exit-after`, or a stage failing; then stops them
/// all (each settles what it holds) and the broker last.
/// With `demo` (`geostream demo`: what to register, and the status line's period), the demo's
/// driver runs beside the stages and its summary is printed once they have stopped.
pub(crate) fn run(
    mut valid: config::Validated,
    args: StandaloneArgs,
    demo: Option<(DemoPlan, Duration)>,
) -> Result<(), CliError> {
    prepare(&mut valid, &args)?;
    let listen = broker_listen(&valid.config.kafka.bootstrap)?;
    let token = match &demo {
        Some(_) => demo::ensure_token(&mut valid)?,
        None => None,
    };
    let started = std::time::Instant::now();
    runtime()?.block_on(async {
        let broker = geostream_broker::EmbeddedBroker::start(geostream_broker::BrokerConfig {
            data_dir: valid.config.data_dir.join("broker"),
            listen,
        })
        .await?;
        tracing::info!(
            bootstrap = %broker.bootstrap(),
            data_dir = %valid.config.data_dir.display(),
            api = %format!("http://{}", valid.api_listen),
            "standalone: embedded broker up; starting ingest, process, sink and api"
        );
        let telemetry = crate::start_telemetry(&valid, "standalone").await?;
        let stop = CancellationToken::new();
        let stopper = {
            let stop = stop.clone();
            let exit_after = args.exit_after;
            async move {
                tokio::select! {
                    () = crate::shutdown_signal() => tracing::info!("standalone: stopping (signal)"),
                    () = sleep_or_never(exit_after) => tracing::info!("standalone: stopping (--exit-after)"),
                    () = stop.cancelled() => {}
                }
                stop.cancel();
            }
        };
        let driver = async {
            match &demo {
                Some((plan, every)) => demo::drive(&valid, plan, token.as_deref(), &telemetry, *every, &stop).await,
                // Nothing to drive: this "stage" lasts as long as the others, like the demo's.
                None => {
                    stop.cancelled().await;
                    Ok(())
                }
            }
        };
        // Each stage's readiness checks under its own name (`process/kafka`), in the one /readyz.
        let scoped = ["ingest", "process", "sink", "api"].map(|s| telemetry.scoped(s));
        let (_, driver, ingest, process, sink, api) = tokio::join!(
            stopper,
            // A demo that cannot register its feeds would show an empty map: stop instead. (The
            // driver only ends by itself on an error; otherwise it ends after the stop.)
            stage("demo", &stop, driver),
            stage("ingest", &stop, serve_ingest(&valid, &scoped[0], stop.clone().cancelled_owned())),
            stage("process", &stop, serve_process(&valid, &scoped[1], stop.clone().cancelled_owned())),
            stage("sink", &stop, serve_sink(&valid, &scoped[2], stop.clone().cancelled_owned())),
            stage("api", &stop, serve_api(&valid, &scoped[3], stop.clone().cancelled_owned())),
        );
        let stopped = broker.shutdown().await;
        if let Some((plan, _)) = &demo {
            // After the stages stopped: the figures are final.
            let status = demo::Status::from_metrics(&telemetry.encode().unwrap_or_default());
            print!("{}", status.summary(plan, started.elapsed()));
        }
        driver.and(ingest).and(process).and(sink).and(api)?;
        stopped.map_err(CliError::from)
    })
}

/// One stage's run; when it ends (an error, or a stop), the others are told to stop too: a
/// standalone with a stage missing would look alive and lose that stage's work.
async fn stage(
    name: &'static str,
    stop: &CancellationToken,
    run: impl Future<Output = Result<(), CliError>>,
) -> Result<(), CliError> {
    let mut result = run.await;
    // Every stage runs until the stop; one that ends by itself before it is a bug, and must not
    // take the process down with exit code 0 as if it had been asked to stop.
    if result.is_ok() && !stop.is_cancelled() {
        result = Err(CliError::Other(format!("the {name} stage ended by itself, without a stop")));
    }
    if let Err(e) = &result {
        tracing::error!(stage = name, error = %e, "standalone: stage failed; stopping the others");
    }
    stop.cancel();
    result
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The configuration every stage of a standalone process shares: the data directory, the
/// archive as the store (always on: it is what the API answers from without a search engine),
/// and the search engine when given.
fn prepare(valid: &mut config::Validated, args: &StandaloneArgs) -> Result<(), CliError> {
    let cfg = &mut valid.config;
    if let Some(dir) = &args.data_dir {
        cfg.data_dir = dir.clone();
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| CliError::Other(format!("data directory {} cannot be created: {e}", cfg.data_dir.display())))?;
    // Relative paths would move with the working directory of whoever starts it next time.
    cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)
        .map_err(|e| CliError::Other(format!("data directory {} cannot be resolved: {e}", cfg.data_dir.display())))?;
    if let Some(url) = &args.elasticsearch {
        cfg.elasticsearch.url = Some(url.clone());
    }
    cfg.archive.enabled = true;
    Ok(())
}

/// The one local address the embedded broker listens on: `kafka.bootstrap`, which must be a
/// single `ip:port` of this machine (clients reach the broker there).
fn broker_listen(bootstrap: &str) -> Result<SocketAddr, CliError> {
    let problem = |why: &str| {
        CliError::Config(config::ConfigError::Invalid(vec![config::Problem {
            key: "kafka.bootstrap".into(),
            problem: format!("{bootstrap:?} {why}"),
            fix: "for standalone, one local address such as 127.0.0.1:9092 (where the embedded broker \
                  listens; the CLI reaches it there too)"
                .into(),
        }]))
    };
    if bootstrap.contains(',') {
        return Err(problem("lists several brokers"));
    }
    let addr: SocketAddr = bootstrap.trim().parse().map_err(|_| problem("is not an ip:port"))?;
    if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
        // Binding another machine's address would fail anyway; say why up front.
        let local = std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_ok();
        if !local {
            return Err(problem("is not an address of this machine"));
        }
    }
    Ok(addr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A stage that returns by itself must not pass for a requested stop (it once did, and the
    /// standalone exited 0 a moment after it started).
    #[test]
    fn a_stage_that_ends_before_the_stop_is_an_error_and_stops_the_others() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let stop = CancellationToken::new();
            let e = stage("demo", &stop, async { Ok(()) }).await.unwrap_err().to_string();
            assert!(e.contains("demo stage ended by itself"), "{e}");
            assert!(stop.is_cancelled(), "the others are told to stop");

            let stop = CancellationToken::new();
            let waits = stage("api", &stop, {
                let stop = stop.clone();
                async move {
                    stop.cancelled().await;
                    Ok(())
                }
            });
            stop.cancel();
            waits.await.unwrap();

            let stop = CancellationToken::new();
            let failed = stage("sink", &stop, async { Err(CliError::Other("broken".into())) }).await;
            assert_eq!(failed.unwrap_err().to_string(), CliError::Other("broken".into()).to_string());
            assert!(stop.is_cancelled());
        });
    }

    #[test]
    fn the_broker_listens_on_the_one_local_bootstrap_address() {
        assert_eq!(broker_listen("127.0.0.1:19092").unwrap(), "127.0.0.1:19092".parse().unwrap());
        assert_eq!(broker_listen(" [::1]:9092 ").unwrap(), "[::1]:9092".parse().unwrap());
        for bad in ["a:9092,b:9092", "kafka:9092", "127.0.0.1", "203.0.113.7:9092"] {
            let e = broker_listen(bad).unwrap_err().to_string();
            assert!(e.contains("kafka.bootstrap"), "{bad}: {e}");
        }
    }
}
