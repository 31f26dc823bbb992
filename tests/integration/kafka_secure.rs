//! Kafka with SASL/SCRAM over TLS and ACLs enforced (`kafka-secure` in testenv): two fresh tenants,
//! each with its own SCRAM user and exactly the ACLs `geostream kafka acls` prints. A tenant can do
//! everything its stages do on its own names (create topics, idempotent and transactional produce,
//! consume in its groups, commit offsets inside a transaction) and nothing on the other tenant's:
//! the broker answers with authorization errors. Wrong passwords and connections without SASL or
//! TLS are refused. The operator's principal gets a served tenant's registries and nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use geostream_kafka::acls::{operator_acls, tenant_acls};
use geostream_kafka::{TopicSpec, client_config, ensure_topics};
use geostream_model::{FenceSpec, Naming, Stage, TenantId, TopicKind};
use geostream_processor::registry::RegistryTopic;
use geostream_tests::SecureKafka;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

type Props = BTreeMap<String, String>;

/// A tenant with its own SCRAM user and the ACLs geostream computes for it.
struct Tenant {
    id: TenantId,
    props: Props,
}

impl Tenant {
    fn new(kafka: &SecureKafka, prefix: &str) -> Self {
        let id: TenantId = geostream_tests::unique(prefix).parse().expect("tenant id");
        let user = id.to_string();
        let password = format!("pw-{}", geostream_tests::unique("scram"));
        kafka.create_user(&user, &password);
        for binding in tenant_acls(&Naming::default(), &id, &format!("User:{user}")).expect("principal") {
            kafka.kafka_acls(&binding.add_args());
        }
        Tenant { props: kafka.client_properties(&user, &password), id }
    }

    fn topic(&self, kind: TopicKind) -> String {
        Naming::default().topic(&self.id, kind)
    }

    fn group(&self, stage: Stage) -> String {
        Naming::default().consumer_group(&self.id, stage)
    }

    /// The processor's transactional id for `instance`.
    fn transactional_id(&self, instance: &str) -> String {
        Naming::default().transactional_id(&self.id, Stage::Process, instance)
    }

    /// Topics as the stages create them at start, with the tenant's own credentials.
    async fn create_topics(&self) {
        let topics = [
            TopicSpec::new(self.topic(TopicKind::Observations), 2, false),
            TopicSpec::new(self.topic(TopicKind::Events), 1, false),
            TopicSpec::new(self.topic(TopicKind::ProcessState), 1, true),
        ];
        ensure_topics(&self.props, &topics, Some(1)).await.expect("a tenant creates its own topics");
    }
}

fn with(props: &Props, extra: &[(&str, &str)]) -> rdkafka::ClientConfig {
    let mut cfg = client_config(props);
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg
}

fn rdkafka_code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

async fn produce(props: &Props, topic: &str, n: usize) -> Result<(), KafkaError> {
    let producer: FutureProducer =
        with(props, &[("enable.idempotence", "true"), ("acks", "all"), ("message.timeout.ms", "20000")])
            .create()
            .expect("producer");
    for i in 0..n {
        let key = format!("track-{i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload("{}"), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Polls `consumer` until a record or an error arrives, at most `attempts` times.
fn next(consumer: &BaseConsumer, attempts: usize) -> Option<Result<(i32, i64), KafkaError>> {
    for _ in 0..attempts {
        match consumer.poll(Duration::from_secs(1)) {
            None => continue,
            Some(Ok(m)) => return Some(Ok((m.partition(), m.offset()))),
            Some(Err(e)) => return Some(Err(e)),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_acls_let_it_run_its_stages_and_keep_it_out_of_another_tenants_names() {
    let Some(kafka) = SecureKafka::from_env("kafka secure tenants") else { return };
    let a = Tenant::new(&kafka, "sa");
    let b = Tenant::new(&kafka, "sb");
    a.create_topics().await;
    b.create_topics().await;

    // A's own names: idempotent produce, consume in its sink group and commit.
    let obs = a.topic(TopicKind::Observations);
    produce(&a.props, &obs, 10).await.expect("A produces to its observations");
    let consumer: BaseConsumer = with(
        &a.props,
        &[("group.id", &a.group(Stage::Sink)), ("auto.offset.reset", "earliest"), ("enable.auto.commit", "false")],
    )
    .create()
    .expect("consumer");
    consumer.subscribe(&[&obs]).expect("subscribe");
    let mut seen = 0;
    while seen < 10 {
        match next(&consumer, 60) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => panic!("A consuming its own topic in its own group: {e}"),
            None => panic!("A's consumer got {seen} of 10 records"),
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("A commits in its own group");
    drop(consumer);

    // The processor's pattern: consume in its group, produce and commit the offsets in a
    // transaction under a transactional id of the form it uses.
    let events = a.topic(TopicKind::Events);
    let tx_id = a.transactional_id("pod-0");
    let input: BaseConsumer = with(
        &a.props,
        &[
            ("group.id", &a.group(Stage::Process)),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ],
    )
    .create()
    .expect("process consumer");
    input.subscribe(&[&obs]).expect("subscribe");
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for _ in 0..10 {
        let (p, o) = next(&input, 60).expect("a record for the processor").expect("A reads in its process group");
        next_offsets.insert(p, o + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for (p, o) in &next_offsets {
        offsets.add_partition_offset(&obs, *p, Offset::Offset(*o)).expect("offset");
    }
    let tx: BaseProducer = with(&a.props, &[("transactional.id", &tx_id)]).create().expect("tx producer");
    tx.init_transactions(Duration::from_secs(30)).expect("A initialises its transactional id");
    tx.begin_transaction().expect("begin");
    tx.send(rdkafka::producer::BaseRecord::to(&events).key("k").payload("{\"kind\":\"enter\"}")).expect("enqueue");
    tx.send_offsets_to_transaction(&offsets, &input.group_metadata().expect("group metadata"), Duration::from_secs(30))
        .expect("A commits input offsets in its transaction");
    tx.commit_transaction(Duration::from_secs(30)).expect("A commits its transaction");
    let committed = input.committed_offsets(offsets.clone(), Duration::from_secs(30)).expect("committed offsets");
    assert_eq!(committed.to_topic_map(), offsets.to_topic_map(), "the transaction committed the input offsets");
    drop(input);

    let reader: BaseConsumer = with(
        &a.props,
        &[
            ("group.id", &format!("{events}.reader")),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
        ],
    )
    .create()
    .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&events, 0, Offset::Beginning).expect("partition");
    reader.assign(&tpl).expect("assign");
    let got = next(&reader, 60).expect("the committed event").expect("A reads its events");
    assert_eq!(got, (0, 0), "the transactional event is the first record of A's events");

    // B's names, with A's credentials: every one refused by the broker.
    let b_obs = b.topic(TopicKind::Observations);
    produce(&b.props, &b_obs, 1).await.expect("B itself can produce to B's topic");
    let err = produce(&a.props, &b_obs, 1).await.expect_err("A must not write B's topic");
    assert_eq!(rdkafka_code(&err), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{err}");

    // In a group of A's own, so only the topic is foreign.
    let spy: BaseConsumer =
        with(&a.props, &[("group.id", &format!("{obs}.reader")), ("auto.offset.reset", "earliest")])
            .create()
            .expect("consumer");
    let md = spy.fetch_metadata(Some(&b_obs), Duration::from_secs(30)).expect("metadata request");
    let t = md.topics().iter().find(|t| t.name() == b_obs).expect("B's topic in the answer");
    assert_eq!(t.error().map(RDKafkaErrorCode::from), Some(RDKafkaErrorCode::TopicAuthorizationFailed));
    spy.subscribe(&[&b_obs]).expect("subscribe");
    match next(&spy, 60) {
        Some(Err(e)) => {
            assert_eq!(rdkafka_code(&e), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{e}");
        }
        Some(Ok(at)) => panic!("A read B's record at {at:?}"),
        None => panic!("A's fetch of B's topic neither failed nor returned within the attempts"),
    }
    drop(spy);

    // B's consumer group on A's own topic: joining it is refused. (Offset fetches and commits
    // in it fail too, but librdkafka only reports them as a timeout after retrying the
    // coordinator lookup, so the join is where the broker's answer shows.)
    let intruder: BaseConsumer = with(
        &a.props,
        &[("group.id", &b.group(Stage::Sink)), ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")],
    )
    .create()
    .expect("consumer");
    intruder.subscribe(&[&obs]).expect("subscribe");
    match next(&intruder, 60) {
        Some(Err(e)) => assert_eq!(rdkafka_code(&e), Some(RDKafkaErrorCode::GroupAuthorizationFailed), "{e}"),
        Some(Ok(at)) => panic!("A consumed at {at:?} as a member of B's group"),
        None => panic!("A's join of B's group neither failed nor returned within the attempts"),
    }
    drop(intruder);

    // B's transactional id.
    let b_tx = b.transactional_id("pod-0");
    let tx: BaseProducer = with(&a.props, &[("transactional.id", &b_tx)]).create().expect("tx producer");
    let err = tx.init_transactions(Duration::from_secs(30)).expect_err("A must not use B's transactional id");
    assert!(
        err.to_string().contains("TransactionalIdAuthorizationFailed")
            || rdkafka_code(&err) == Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{err}"
    );

    // Creating a topic in B's namespace.
    let err = ensure_topics(&a.props, &[TopicSpec::new(b.topic(TopicKind::Aggregates), 1, false)], Some(1))
        .await
        .expect_err("A must not create B's topics");
    assert!(matches!(err.source, KafkaError::AdminOp(RDKafkaErrorCode::TopicAuthorizationFailed)), "{err}");
}

/// Records the errors librdkafka reports outside of any call (authentication, TLS, transport).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().expect("lock").push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Asks for metadata with `props`; on failure returns the client errors seen on the way.
fn metadata(props: &Props) -> Result<usize, Vec<String>> {
    let errors = Errors::default();
    let producer: BaseProducer<Errors> = with(props, &[]).create_with_context(errors.clone()).expect("client");
    let result = producer.client().fetch_metadata(None, Duration::from_secs(10));
    // The error callbacks are served by polling.
    for _ in 0..5 {
        producer.poll(Duration::from_millis(200));
    }
    match result {
        Ok(md) => Ok(md.brokers().len()),
        Err(e) => {
            let mut seen = errors.0.lock().expect("lock").clone();
            seen.push(e.to_string());
            Err(seen)
        }
    }
}

#[test]
fn wrong_passwords_and_connections_without_sasl_or_tls_are_refused() {
    let Some(kafka) = SecureKafka::from_env("kafka secure refusals") else { return };
    let user = geostream_tests::unique("refused");
    let password = format!("pw-{}", geostream_tests::unique("scram"));
    kafka.create_user(&user, &password);
    let good = kafka.client_properties(&user, &password);
    assert_eq!(metadata(&good), Ok(1), "the right password connects (no ACL is needed for metadata)");

    let changed = |k: &str, v: Option<&str>| {
        let mut p = good.clone();
        match v {
            Some(v) => p.insert(k.to_owned(), v.to_owned()),
            None => p.remove(k),
        };
        p
    };
    let errors = metadata(&changed("sasl.password", Some("not-the-password"))).expect_err("a wrong password");
    assert!(errors.iter().any(|e| e.contains("Authentication failed")), "{errors:?}");

    let errors = metadata(&changed("sasl.username", Some("nobody-at-all"))).expect_err("an unknown user");
    assert!(errors.iter().any(|e| e.contains("Authentication failed")), "{errors:?}");

    // Plaintext, SASL without TLS, and TLS without SASL on the SASL_SSL port.
    for protocol in ["PLAINTEXT", "SASL_PLAINTEXT", "SSL"] {
        let result = metadata(&changed("security.protocol", Some(protocol)));
        assert!(result.is_err(), "{protocol} must not get metadata: {result:?}");
    }

    // TLS without the test CA: the broker's certificate is not trusted, so nothing is sent.
    let errors = metadata(&changed("ssl.ca.location", None)).expect_err("an untrusted certificate");
    assert!(errors.iter().any(|e| e.contains("certificate verify failed") || e.contains("SSL")), "{errors:?}");
}

/// The operator's own principal with exactly `geostream kafka acls --operator` for one tenant:
/// it creates, writes and reads that tenant's registry topics through the same clients the
/// operator's reconcilers use, and is refused the tenant's data topics and another tenant's
/// registries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_acls_cover_a_tenants_registries_and_nothing_else() {
    let Some(kafka) = SecureKafka::from_env("kafka secure operator") else { return };
    let naming = Naming::default();
    let served: TenantId = geostream_tests::unique("opserved").parse().expect("tenant id");
    let other = Tenant::new(&kafka, "opother");
    other.create_topics().await;
    let user = geostream_tests::unique("operator");
    let password = format!("pw-{}", geostream_tests::unique("scram"));
    kafka.create_user(&user, &password);
    for binding in operator_acls(&naming, &served, &format!("User:{user}")).expect("principal") {
        kafka.kafka_acls(&binding.add_args());
    }
    let props = kafka.client_properties(&user, &password);
    let fence = serde_json::json!({"id": "berth", "name": "Berth", "geometry": {"type": "Polygon",
        "coordinates": [[[10.0, 63.0], [10.1, 63.0], [10.1, 63.1], [10.0, 63.1], [10.0, 63.0]]]}});
    let fence = serde_json::to_vec(&fence).unwrap();

    let fences = RegistryTopic::new(props.clone(), naming.topic(&served, TopicKind::Fences));
    fences.ensure().await.expect("the operator creates the served tenant's fences topic");
    fences.put("berth", Some(&fence)).await.expect("and writes a fence");
    let (registry, refused) = fences.read::<FenceSpec>().await.expect("and reads the registry back");
    assert!(refused.is_empty());
    assert_eq!(registry.specs().map(|f| f.id.to_string()).collect::<Vec<_>>(), ["berth"]);
    for kind in [TopicKind::Analytics, TopicKind::Feeds] {
        let topic = RegistryTopic::new(props.clone(), naming.topic(&served, kind));
        topic.ensure().await.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        topic.put("gone", None).await.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
    let feeds = geostream_ingest::registry::RegistryClient::new(props.clone(), naming.topic(&served, TopicKind::Feeds));
    let (state, _) = feeds.snapshot().await.expect("the feeds registry reads as the operator reads it");
    assert_eq!(state.len(), 0, "the tombstone left no feed");

    // Not the served tenant's data, nor another tenant's registry.
    let data = TopicSpec::new(naming.topic(&served, TopicKind::Observations), 1, false);
    let refused = ensure_topics(&props, &[data], Some(1)).await.expect_err("the operator creates no data topic");
    assert!(refused.to_string().contains("uthoriz"), "{refused}");
    let theirs = RegistryTopic::new(props.clone(), other.topic(TopicKind::Fences));
    let refused = theirs.put("berth", Some(&fence)).await.expect_err("another tenant's registry is not writable");
    assert!(refused.to_string().contains("uthoriz"), "{refused}");
    let reader: BaseConsumer =
        with(&props, &[("group.id", &format!("{}.reader", other.topic(TopicKind::Events)))]).create().unwrap();
    let events = other.topic(TopicKind::Events);
    // Without Describe the broker hides the topic (unknown, not "denied"); its owner sees it.
    let owner: BaseConsumer = with(&other.props, &[("group.id", &format!("{events}.reader"))]).create().unwrap();
    owner.fetch_watermarks(&events, 0, Duration::from_secs(10)).expect("the owner reads its own topic");
    let refused = reader.fetch_watermarks(&events, 0, Duration::from_secs(10));
    assert!(refused.is_err(), "another tenant's data is hidden from the operator: {refused:?}");
}
