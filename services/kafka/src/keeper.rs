//! Keeps long-lived librdkafka clients from being stranded without brokers.
//!
//! Since 2.10, librdkafka forgets every broker that a Metadata response does not list, the
//! bootstrap servers included. A one-broker KRaft cluster answers Metadata with no broker at all
//! while it restarts: it lists only unfenced brokers, and it is still fenced itself. A client that
//! asks in that window forgets every broker it had, has nothing left to connect to, and nothing in
//! librdkafka brings the bootstrap servers back (its re-bootstrap needs a broker to fail first).
//! It then stays silent for good: no error, no reconnect; a producer keeps every queued record, a
//! consumer never rejoins its group. (confluentinc/librdkafka#5301 reports the same on a rolling
//! upgrade. geostream's chaos tests found it as an ingest that stopped sending after a Kafka
//! restart and a sink that never rejoined its group.)
//!
//! The remedy is what librdkafka's own re-bootstrap does: add the bootstrap servers back. Each
//! client created by [`create`] has statistics every [`STATS_INTERVAL_MS`]; when they show no
//! configured or learned broker, the bootstrap servers are added again, and the next metadata
//! request finds the cluster. A client that still has brokers (also a down one, in a real outage)
//! is left alone.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rdkafka::client::Client;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, FutureProducer, ProducerContext};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, ClientContext};
use serde::Deserialize;

/// How often a kept client reports statistics, in ms: how long a stranded client waits at most
/// before its brokers are restored.
pub const STATS_INTERVAL_MS: u32 = 10_000;

/// What a stage's client context does besides keeping brokers: the parts of librdkafka's
/// `ClientContext` and `ConsumerContext` geostream uses. The defaults behave like librdkafka's
/// default context.
pub trait Hooks: Send + Sync + 'static {
    /// A client-level error (librdkafka retries by itself; this is for the log).
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(error = %error, reason, "kafka client error");
    }

    /// Before partitions are assigned or revoked.
    fn pre_rebalance(&self, _rebalance: &Rebalance<'_>) {}

    /// After partitions were assigned or revoked.
    fn post_rebalance(&self, _rebalance: &Rebalance<'_>) {}

    /// An offset commit finished.
    fn commit_callback(&self, _result: KafkaResult<()>, _offsets: &TopicPartitionList) {}
}

/// No hooks: librdkafka's default behaviour.
impl Hooks for () {}

/// The client handle and what to add back when it has no broker.
struct Handle {
    /// `rd_kafka_t *` of the client whose context this is, as an address (a raw pointer is neither
    /// `Send` nor `Sync`; the context must be both).
    client: usize,
    bootstrap: CString,
}

/// A client context with [`Hooks`] that keeps the client's brokers (see the module docs).
pub struct Kept<H = ()> {
    hooks: H,
    handle: Arc<OnceLock<Handle>>,
    restored: Arc<AtomicU64>,
}

impl<H> std::ops::Deref for Kept<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hooks
    }
}

impl<H> Kept<H> {
    /// The stage's hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// How many times the bootstrap servers were added back.
    pub fn restored(&self) -> u64 {
        self.restored.load(Ordering::Relaxed)
    }

    fn keep(&self, stats: &[u8]) {
        let Some(handle) = self.handle.get() else { return };
        if knows_no_broker(stats) != Some(true) {
            return;
        }
        let added = add_brokers(handle);
        self.restored.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            bootstrap = %handle.bootstrap.to_string_lossy(),
            added,
            "kafka client knew no broker any more (the cluster answered with an empty broker list, as a \
             single broker does while it restarts); added the bootstrap servers back"
        );
    }
}

impl<H: Hooks> ClientContext for Kept<H> {
    fn stats_raw(&self, statistics: &[u8]) {
        self.keep(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.hooks.error(error, reason);
    }
}

impl<H: Hooks> ConsumerContext for Kept<H> {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.hooks.pre_rebalance(rebalance);
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.hooks.post_rebalance(rebalance);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.hooks.commit_callback(result, offsets);
    }
}

impl<H: Hooks> ProducerContext for Kept<H> {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A librdkafka client type [`create`] can make: it exposes its native handle.
pub trait KeptClient<C: ClientContext> {
    /// The client inside.
    fn native(&self) -> &Client<C>;
}

impl<H: Hooks> KeptClient<Kept<H>> for BaseConsumer<Kept<H>> {
    fn native(&self) -> &Client<Kept<H>> {
        rdkafka::consumer::Consumer::client(self)
    }
}

impl<H: Hooks> KeptClient<Kept<H>> for StreamConsumer<Kept<H>> {
    fn native(&self) -> &Client<Kept<H>> {
        rdkafka::consumer::Consumer::client(self)
    }
}

impl<H: Hooks> KeptClient<Kept<H>> for BaseProducer<Kept<H>> {
    fn native(&self) -> &Client<Kept<H>> {
        rdkafka::producer::Producer::client(self)
    }
}

impl<H: Hooks> KeptClient<Kept<H>> for rdkafka::producer::ThreadedProducer<Kept<H>> {
    fn native(&self) -> &Client<Kept<H>> {
        rdkafka::producer::Producer::client(self)
    }
}

impl<H: Hooks> KeptClient<rdkafka::producer::future_producer::FutureProducerContext<Kept<H>>>
    for FutureProducer<Kept<H>>
{
    fn native(&self) -> &Client<rdkafka::producer::future_producer::FutureProducerContext<Kept<H>>> {
        rdkafka::producer::Producer::client(self)
    }
}

/// Creates a client from `config` whose brokers are kept (module docs), with `hooks`. Sets
/// `statistics.interval.ms` to [`STATS_INTERVAL_MS`] unless `config` sets it.
pub fn create<T, H, C>(config: &ClientConfig, hooks: H) -> KafkaResult<T>
where
    H: Hooks,
    C: ClientContext,
    T: FromClientConfigAndContext<Kept<H>> + KeptClient<C>,
{
    let config = with_statistics(config);
    let bootstrap = config.get("bootstrap.servers").unwrap_or_default().to_owned();
    let handle = Arc::new(OnceLock::new());
    let context = Kept { hooks, handle: Arc::clone(&handle), restored: Arc::default() };
    let client = T::from_config_and_context(&config, context)?;
    // A bootstrap list with a NUL byte cannot have made a client; if it somehow did, the client
    // is simply not kept.
    if let Ok(bootstrap) = CString::new(bootstrap) {
        let _ = handle.set(Handle { client: client.native().native_ptr() as usize, bootstrap });
    }
    Ok(client)
}

/// `config` with `statistics.interval.ms` set to [`STATS_INTERVAL_MS`] unless it sets its own.
fn with_statistics(config: &ClientConfig) -> ClientConfig {
    let mut config = config.clone();
    if config.get("statistics.interval.ms").is_none() {
        config.set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
    }
    config
}

/// Whether a librdkafka statistics document shows no configured or learned broker (logical
/// brokers such as the group coordinator do not connect by themselves). `None`: not statistics.
pub fn knows_no_broker(stats: &[u8]) -> Option<bool> {
    #[derive(Deserialize)]
    struct Stats<'a> {
        #[serde(borrow)]
        brokers: HashMap<&'a str, Broker<'a>>,
    }
    #[derive(Deserialize)]
    struct Broker<'a> {
        #[serde(borrow)]
        source: &'a str,
    }
    let stats: Stats<'_> = serde_json::from_slice(stats).ok()?;
    Some(!stats.brokers.values().any(|b| matches!(b.source, "configured" | "learned")))
}

/// Adds the bootstrap servers to the client's broker list; returns how many were added (librdkafka
/// skips those it already has).
#[allow(unsafe_code)]
fn add_brokers(handle: &Handle) -> i32 {
    // SAFETY: `handle.client` is the `rd_kafka_t` of the client that owns the `Kept` context
    // holding it: `create` sets it right after making that client, and the context is not handed
    // out elsewhere. It is only used from `stats_raw`, which librdkafka calls while serving that
    // client's events, so the handle is alive. `rd_kafka_brokers_add` is thread-safe public API
    // and copies the NUL-terminated list.
    unsafe {
        rdkafka::bindings::rd_kafka_brokers_add(
            handle.client as *mut rdkafka::bindings::rd_kafka_t,
            handle.bootstrap.as_ptr(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_client_with_only_logical_brokers_knows_none() {
        let stranded = br#"{"name":"rdkafka#producer-1","brokers":{
            "GroupCoordinator":{"name":"GroupCoordinator","nodeid":-1,"source":"logical","state":"INIT"}},
            "topics":{"t":{"partitions":{"0":{"leader":-1}}}}}"#;
        assert_eq!(knows_no_broker(stranded), Some(true));
        let empty = br#"{"name":"c","brokers":{},"topics":{}}"#;
        assert_eq!(knows_no_broker(empty), Some(true));
    }

    #[test]
    fn a_client_with_a_broker_even_a_down_one_is_left_alone() {
        let learned_down = br#"{"brokers":{
            "localhost:9092/1":{"nodeid":1,"source":"learned","state":"DOWN"},
            "GroupCoordinator":{"nodeid":-1,"source":"logical","state":"UP"}}}"#;
        assert_eq!(knows_no_broker(learned_down), Some(false));
        let bootstrap =
            br#"{"brokers":{"127.0.0.1:9092/bootstrap":{"nodeid":-1,"source":"configured","state":"INIT"}}}"#;
        assert_eq!(knows_no_broker(bootstrap), Some(false));
    }

    #[test]
    fn anything_but_statistics_is_not_read_as_stranded() {
        assert_eq!(knows_no_broker(b"not json"), None);
        assert_eq!(knows_no_broker(br#"{"name":"x"}"#), None);
    }

    #[test]
    fn kept_clients_report_statistics_unless_configured_otherwise() {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", "127.0.0.1:1");
        assert_eq!(with_statistics(&cfg).get("statistics.interval.ms"), Some("10000"));
        cfg.set("statistics.interval.ms", "250");
        assert_eq!(with_statistics(&cfg).get("statistics.interval.ms"), Some("250"));
    }

    #[test]
    fn create_attaches_the_client_handle() {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", "127.0.0.1:1");
        let p: BaseProducer<Kept> = create(&cfg, ()).unwrap();
        let handle = rdkafka::producer::Producer::context(&p).handle.get().expect("attached");
        assert_eq!(handle.client, rdkafka::producer::Producer::client(&p).native_ptr() as usize);
        assert_eq!(handle.bootstrap.to_str().unwrap(), "127.0.0.1:1");
    }
}
