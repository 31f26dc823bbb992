//! What the stages ask of Kafka, asked of the embedded broker through real rdkafka clients
//! (librdkafka 2.12): admin topic creation with configs, idempotent and transactional producers,
//! read_committed consumers, consumer groups that commit and resume, watermarks, metadata, and a
//! restart on the same data dir. Each test runs its own broker on a fresh temp dir.
//!
//! rdkafka's blocking calls run on the test's own thread; the broker's tasks run on the runtime's
//! worker threads, so blocking here never stalls the broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use geostream_broker::{BrokerConfig, EmbeddedBroker};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tempfile::TempDir;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One consumed record: (partition, offset, key, value).
type Rec = (i32, i64, String, String);

async fn start(dir: &TempDir) -> EmbeddedBroker {
    match EmbeddedBroker::start(BrokerConfig::new(dir.path())).await {
        Ok(b) => b,
        Err(e) => panic!("embedded broker did not start: {e}"),
    }
}

fn client(broker: &EmbeddedBroker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.bootstrap());
    c
}

async fn create_topics(
    broker: &EmbeddedBroker,
    topics: &[NewTopic<'_>],
) -> Vec<Result<String, (String, RDKafkaErrorCode)>> {
    let admin: AdminClient<DefaultClientContext> = client(broker).create().expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    admin.create_topics(topics, &opts).await.expect("CreateTopics request")
}

async fn create_plain(broker: &EmbeddedBroker, name: &str, partitions: i32) {
    for r in create_topics(broker, &[NewTopic::new(name, partitions, TopicReplication::Fixed(-1))]).await {
        if let Err((topic, code)) = r {
            panic!("create {topic}: {code:?}");
        }
    }
}

/// Counts delivery reports, so a producer test fails on a record the broker refused.
#[derive(Default, Clone)]
struct Deliveries {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn producer(cfg: &ClientConfig) -> (BaseProducer<Deliveries>, Deliveries) {
    let d = Deliveries::default();
    let p = cfg.create_with_context(d.clone()).expect("producer");
    (p, d)
}

/// Sends `records` (key, value) to `topic`, polling when librdkafka's queue is full.
fn send_all(p: &BaseProducer<Deliveries>, topic: &str, records: impl IntoIterator<Item = (String, String)>) {
    for (k, v) in records {
        let mut rec = BaseRecord::to(topic).key(&k).payload(&v);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    p.poll(Duration::from_millis(50));
                    rec = back;
                }
                Err((e, _)) => panic!("send to {topic}: {e}"),
            }
        }
        p.poll(Duration::ZERO);
    }
}

fn consumer(broker: &EmbeddedBroker, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client(broker);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// Polls until `want` records arrived or `deadline` passed; then polls `settle` more to catch extras.
fn poll_records(c: &BaseConsumer, want: usize, deadline: Duration, settle: Duration) -> Vec<Rec> {
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < want && start.elapsed() < deadline {
        poll_one(c, &mut got);
    }
    let extra = Instant::now();
    while extra.elapsed() < settle {
        poll_one(c, &mut got);
    }
    got
}

fn poll_one(c: &BaseConsumer, got: &mut Vec<Rec>) {
    match c.poll(Duration::from_millis(200)) {
        Some(Ok(m)) => got.push((
            m.partition(),
            m.offset(),
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        )),
        Some(Err(e)) => eprintln!("consumer error: {e}"),
        None => {}
    }
}

fn committed(c: &BaseConsumer, topic: &str, partitions: i32) -> BTreeMap<i32, Offset> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, TIMEOUT).expect("OffsetFetch");
    (0..partitions).map(|p| (p, got.find_partition(topic, p).map(|e| e.offset()).unwrap_or(Offset::Invalid))).collect()
}

fn watermark_total(c: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            let (low, high) = c.fetch_watermarks(topic, p, TIMEOUT).expect("ListOffsets");
            high - low
        })
        .sum()
}

fn keyed(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("{prefix}-k{i}"), format!("{prefix}-v{i}-{}", "x".repeat(i % 50)))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_topics_with_configs_and_metadata_lists_them() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;

    let topics = [
        NewTopic::new("plain", 3, TopicReplication::Fixed(-1)).set("retention.ms", "604800000"),
        NewTopic::new("registry", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    ];
    let results = create_topics(&broker, &topics).await;
    assert_eq!(results, vec![Ok("plain".to_owned()), Ok("registry".to_owned())]);
    // The stages create their topics at every start and count "already exists" as success.
    let again = create_topics(&broker, &topics[..1]).await;
    assert_eq!(again, vec![Err(("plain".to_owned(), RDKafkaErrorCode::TopicAlreadyExists))]);

    let c = consumer(&broker, "metadata-reader", &[]);
    let md = c.fetch_metadata(None, TIMEOUT).expect("Metadata");
    let seen: BTreeMap<&str, usize> = md.topics().iter().map(|t| (t.name(), t.partitions().len())).collect();
    assert_eq!(seen.get("plain"), Some(&3), "metadata: {seen:?}");
    assert_eq!(seen.get("registry"), Some(&1), "metadata: {seen:?}");
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(format!("{}:{}", md.brokers()[0].host(), md.brokers()[0].port()), broker.bootstrap());
    for t in md.topics().iter().filter(|t| t.name() == "plain") {
        for p in t.partitions() {
            assert_eq!(p.leader(), md.brokers()[0].id(), "partition {} has no live leader", p.id());
        }
    }

    // The compaction setting must have stuck, or the registry topics would lose old feeds.
    let admin: AdminClient<DefaultClientContext> = client(&broker).create().expect("admin client");
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic("registry")], &AdminOptions::new().request_timeout(Some(TIMEOUT)))
        .await
        .expect("DescribeConfigs request");
    let resource = configs.into_iter().next().expect("one resource").expect("DescribeConfigs result");
    let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"), "entries: {:?}", resource.entries);

    drop((c, admin));
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_delivers_10000_keyed_records_exactly() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;
    create_plain(&broker, "obs", 3).await;

    let mut cfg = client(&broker);
    cfg.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
    let (p, d) = producer(&cfg);
    let sent = keyed("obs", 10_000);
    send_all(&p, "obs", sent.clone());
    p.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(d.failed.load(Ordering::Relaxed), 0, "deliveries failed");
    assert_eq!(d.ok.load(Ordering::Relaxed), 10_000);

    let c = consumer(&broker, "obs-reader", &[]);
    c.subscribe(&["obs"]).expect("subscribe");
    let got = poll_records(&c, 10_000, Duration::from_secs(90), Duration::from_secs(2));
    assert_eq!(got.len(), 10_000, "records read back");
    let expected: BTreeMap<String, String> = sent.into_iter().collect();
    let read: BTreeMap<String, String> = got.iter().map(|(_, _, k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(read.len(), 10_000, "distinct keys read back");
    assert!(read == expected, "keys or values differ from what was sent");
    let offsets: BTreeSet<(i32, i64)> = got.iter().map(|(p, o, _, _)| (*p, *o)).collect();
    assert_eq!(offsets.len(), 10_000, "a (partition, offset) was delivered twice");
    assert_eq!(watermark_total(&c, "obs", 3), 10_000);

    drop((p, c));
    broker.shutdown().await.expect("shutdown");
}

// tansu-broker 0.6.0 routes no EndTxn (API key 26) and answers read_committed fetches without their
// aborted transactions; the embedded broker adds both. Without the first, librdkafka refuses
// commit_transaction and abort_transaction as "not supported by broker"; without the second, the
// read_committed consumer below gets the aborted records.

fn transactional_producer(broker: &EmbeddedBroker, id: &str) -> (BaseProducer<Deliveries>, Deliveries) {
    let mut cfg = client(broker);
    cfg.set("transactional.id", id).set("enable.idempotence", "true").set("acks", "all");
    let (tx, d) = producer(&cfg);
    tx.init_transactions(TIMEOUT).expect("InitProducerId");
    (tx, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_abort_and_read_committed_sees_only_committed() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;
    create_plain(&broker, "txn-out", 2).await;
    let (tx, td) = transactional_producer(&broker, "txn-test-1");

    tx.begin_transaction().expect("begin 1");
    send_all(&tx, "txn-out", keyed("committed", 5));
    tx.commit_transaction(TIMEOUT).expect("commit 1");

    tx.begin_transaction().expect("begin 2");
    send_all(&tx, "txn-out", keyed("aborted", 5));
    tx.flush(TIMEOUT).expect("flush before abort");
    tx.abort_transaction(TIMEOUT).expect("abort 2");

    tx.begin_transaction().expect("begin 3");
    send_all(&tx, "txn-out", keyed("also-committed", 3));
    tx.commit_transaction(TIMEOUT).expect("commit 3");
    assert_eq!(td.ok.load(Ordering::Relaxed), 13, "all 13 records were acknowledged before their transaction ended");

    let rc = consumer(&broker, "txn-reader", &[("isolation.level", "read_committed")]);
    rc.subscribe(&["txn-out"]).expect("subscribe");
    let got = poll_records(&rc, 8, Duration::from_secs(30), Duration::from_secs(3));
    let keys: BTreeSet<String> = got.iter().map(|(_, _, k, _)| k.clone()).collect();
    let aborted: Vec<&String> = keys.iter().filter(|k| k.starts_with("aborted")).collect();
    assert!(aborted.is_empty(), "read_committed consumer saw aborted records: {aborted:?}");
    assert_eq!(got.len(), 8, "committed records read: {keys:?}");

    // read_uncommitted sees the aborted records too: proves they reached the log and were filtered.
    let ru = consumer(&broker, "txn-reader-uncommitted", &[("isolation.level", "read_uncommitted")]);
    ru.subscribe(&["txn-out"]).expect("subscribe");
    assert_eq!(poll_records(&ru, 13, Duration::from_secs(30), Duration::from_secs(2)).len(), 13);

    drop((tx, rc, ru));
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_offsets_to_transaction_commits_the_groups_offsets() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;
    create_plain(&broker, "txn-in", 1).await;
    create_plain(&broker, "txn-out", 1).await;

    // Consume-transform-produce as the processor does: the input consumer is a group member.
    let (plain, d) = producer(client(&broker).set("acks", "all"));
    send_all(&plain, "txn-in", keyed("in", 4));
    plain.flush(TIMEOUT).expect("flush input");
    assert_eq!(d.ok.load(Ordering::Relaxed), 4);
    let input = consumer(&broker, "txn-group", &[("isolation.level", "read_committed")]);
    input.subscribe(&["txn-in"]).expect("subscribe");
    let inputs = poll_records(&input, 4, Duration::from_secs(30), Duration::ZERO);
    assert_eq!(inputs.len(), 4, "input records");
    let metadata = input.group_metadata().expect("group metadata");

    let (tx, _) = transactional_producer(&broker, "txn-test-2");
    tx.begin_transaction().expect("begin");
    send_all(&tx, "txn-out", keyed("out", 4));
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("txn-in", 0, Offset::Offset(4)).expect("offset");
    tx.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).expect("AddOffsetsToTxn/TxnOffsetCommit");
    tx.commit_transaction(TIMEOUT).expect("commit");

    assert_eq!(committed(&input, "txn-in", 1), BTreeMap::from([(0, Offset::Offset(4))]), "offsets committed in txn");
    let rc = consumer(&broker, "txn-out-reader", &[("isolation.level", "read_committed")]);
    rc.subscribe(&["txn-out"]).expect("subscribe");
    assert_eq!(poll_records(&rc, 4, Duration::from_secs(30), Duration::from_secs(2)).len(), 4);

    drop((plain, input, tx, rc));
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_resumes_from_committed_offset() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;
    create_plain(&broker, "resume", 1).await;
    let (p, d) = producer(client(&broker).set("acks", "all"));
    send_all(&p, "resume", keyed("r", 100));
    p.flush(TIMEOUT).expect("flush");
    assert_eq!(d.ok.load(Ordering::Relaxed), 100);

    // read_committed as the processor's input consumer has it, on records outside transactions.
    let first = consumer(&broker, "resumers", &[("isolation.level", "read_committed")]);
    first.subscribe(&["resume"]).expect("subscribe");
    let part = poll_records(&first, 40, Duration::from_secs(30), Duration::ZERO);
    assert!(part.len() >= 40, "first consumer read {}", part.len());
    let last = &part[39];
    let mut commit = TopicPartitionList::new();
    commit.add_partition_offset("resume", 0, Offset::Offset(last.1 + 1)).expect("offset");
    first.commit(&commit, CommitMode::Sync).expect("OffsetCommit");
    assert_eq!(committed(&first, "resume", 1), BTreeMap::from([(0, Offset::Offset(40))]));
    drop(first);

    let second = consumer(&broker, "resumers", &[("isolation.level", "read_committed")]);
    second.subscribe(&["resume"]).expect("subscribe");
    let rest = poll_records(&second, 60, Duration::from_secs(45), Duration::from_secs(2));
    assert_eq!(rest.first().map(|r| r.1), Some(40), "second consumer started elsewhere");
    assert_eq!(rest.len(), 60, "second consumer read the remainder exactly once");
    assert_eq!(rest.last().map(|r| r.2.as_str()), Some("r-k99"));

    drop((p, second));
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_topics_and_committed_offsets_survive_a_restart() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;
    let cluster_id = broker.cluster_id().to_owned();
    create_plain(&broker, "durable", 3).await;
    let mut cfg = client(&broker);
    cfg.set("enable.idempotence", "true").set("acks", "all");
    let (p, d) = producer(&cfg);
    let sent = keyed("d", 50);
    send_all(&p, "durable", sent.clone());
    p.flush(TIMEOUT).expect("flush");
    assert_eq!(d.ok.load(Ordering::Relaxed), 50);

    let c = consumer(&broker, "durable-group", &[]);
    c.subscribe(&["durable"]).expect("subscribe");
    let before = poll_records(&c, 50, Duration::from_secs(30), Duration::from_secs(1));
    assert_eq!(before.len(), 50);
    // Commit 20 of them: per partition, the position after the last of those 20.
    let mut upto: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset, _, _) in &before[..20] {
        let e = upto.entry(*partition).or_insert(0);
        *e = (*e).max(offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in &upto {
        tpl.add_partition_offset("durable", *partition, Offset::Offset(*next)).expect("offset");
    }
    c.commit(&tpl, CommitMode::Sync).expect("OffsetCommit");
    let committed_before = committed(&c, "durable", 3);
    drop((p, c));
    broker.shutdown().await.expect("shutdown");

    let broker = start(&dir).await;
    assert_eq!(broker.cluster_id(), cluster_id, "cluster id changed across restart");
    let c = consumer(&broker, "durable-group", &[]);
    let md = c.fetch_metadata(Some("durable"), TIMEOUT).expect("Metadata");
    assert_eq!(md.topics().first().map(|t| t.partitions().len()), Some(3), "topic after restart");
    assert_eq!(watermark_total(&c, "durable", 3), 50, "records after restart");
    assert_eq!(committed(&c, "durable", 3), committed_before, "committed offsets after restart");

    c.subscribe(&["durable"]).expect("subscribe");
    let after = poll_records(&c, 30, Duration::from_secs(45), Duration::from_secs(2));
    let expected: BTreeSet<(i32, i64)> = before[20..].iter().map(|r| (r.0, r.1)).collect();
    let got: BTreeSet<(i32, i64)> = after.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(after.len(), 30, "resumed consumer read {} records", after.len());
    assert_eq!(got, expected, "resumed consumer read other records than the uncommitted ones");

    // Every record, keys and values intact, from the beginning.
    let all = consumer(&broker, "durable-all", &[]);
    all.subscribe(&["durable"]).expect("subscribe");
    let read = poll_records(&all, 50, Duration::from_secs(45), Duration::from_secs(1));
    let read: BTreeMap<String, String> = read.into_iter().map(|(_, _, k, v)| (k, v)).collect();
    assert!(read == sent.into_iter().collect::<BTreeMap<_, _>>(), "records changed across restart");

    drop((c, all));
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_data_dir_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let broker = start(&dir).await;
    assert!(dir.path().join("broker.db").exists(), "database not in the data dir");
    match EmbeddedBroker::start(BrokerConfig::new(dir.path())).await {
        Err(geostream_broker::BrokerError::Locked(_)) => {}
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second broker started on a data dir in use"),
    }
    broker.shutdown().await.expect("shutdown");
}
