//! The `kafka` source: consume a topic of another Kafka cluster (or of the same one); each message
//! value is one payload.
//!
//! Offsets are committed by hand, never automatically: after a batch is durable, one past the
//! highest offset of every partition in it is committed asynchronously (the next batch does not
//! wait for the broker), and once more synchronously when the feed stops, so a restart continues exactly where
//! the spool's records end. A rebalance between decode and commit can make another member (or
//! this one) read part of a batch again: at-least-once, and the observation ids are the same the
//! second time. A group without committed offsets starts at the earliest retained message unless
//! `properties` set `auto.offset.reset`: a new feed imports what the topic holds rather than
//! silently skipping it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use geostream_kafka::{Hooks, Kept};
use geostream_model::Source;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{BATCH_MAX_UNITS, commit, sleep_or_cancel};
use crate::feed::{FeedHandle, SourceError, now};
use crate::metrics::IngestMetrics;
use crate::pipeline::{Batch, FeedPipeline};
use geostream_model::backoff::Backoff;

/// How long the final synchronous offset commit may take when the feed stops.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs librdkafka's errors, rebalances and failed commits for the feed.
struct FeedContext {
    feed: String,
    metrics: IngestMetrics,
}

impl Hooks for FeedContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.source_error(&self.feed);
        tracing::warn!(feed = %self.feed, error = %error, reason, "kafka source: client error (librdkafka retries)");
    }

    fn pre_rebalance(&self, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(feed = %self.feed, partitions = %partitions(tpl), "kafka source: partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(feed = %self.feed, partitions = %partitions(tpl), "kafka source: partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(feed = %self.feed, error = %e, "kafka source: rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                tracing::trace!(feed = %self.feed, offsets = %partitions(offsets), "kafka source: offsets committed")
            }
            // After a rebalance the new owner re-reads from the previous commit: duplicates, no loss.
            Err(e) => tracing::warn!(
                feed = %self.feed, error = %e, offsets = %partitions(offsets),
                "kafka source: offset commit failed; those messages may be read again"
            ),
        }
    }
}

/// `topic/partition@offset, ...` for logs.
fn partitions(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}/{}@{o}", e.topic(), e.partition()),
            _ => format!("{}/{}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The consumer configuration: the feed's properties, then what this source relies on.
pub fn consumer_config(
    bootstrap: &str,
    group: &str,
    properties: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut cfg = properties.clone();
    cfg.entry("auto.offset.reset".to_owned()).or_insert_with(|| "earliest".to_owned());
    cfg.insert("bootstrap.servers".to_owned(), bootstrap.to_owned());
    cfg.insert("group.id".to_owned(), group.to_owned());
    // Offsets move only when this source commits them, after the spool has the records.
    cfg.insert("enable.auto.commit".to_owned(), "false".to_owned());
    cfg.insert("enable.auto.offset.store".to_owned(), "false".to_owned());
    cfg
}

/// Runs the source until `cancel`.
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::Kafka { bootstrap, topic, group, properties } = &handle.spec.source else {
        return Err(handle.config_error("not a kafka source"));
    };
    let group = group.clone().unwrap_or_else(|| format!("geostream-{}-ingest-{}", handle.tenant.as_str(), handle.id()));
    let mut config = ClientConfig::new();
    for (k, v) in consumer_config(bootstrap, &group, properties) {
        config.set(k, v);
    }
    let context = FeedContext { feed: handle.id().to_owned(), metrics: handle.metrics.clone() };
    let consumer: StreamConsumer<Kept<FeedContext>> = geostream_kafka::create(&config, context).map_err(|e| {
        handle.config_error(format!("the Kafka consumer cannot be created (check source.properties): {e}"))
    })?;
    consumer
        .subscribe(&[topic.as_str()])
        .map_err(|e| handle.config_error(format!("source.topic {topic:?} cannot be subscribed: {e}")))?;
    let consumer = Arc::new(consumer);
    let mut pipeline = handle.pipeline()?;
    tracing::info!(feed = %handle.id(), %bootstrap, %topic, %group, "kafka source: consuming");

    let id = handle.id().to_owned();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut committed: Option<TopicPartitionList> = None;
    let mut result = Ok(());
    loop {
        let mut read = Read::default();
        {
            let mut stream = consumer.stream();
            let first = tokio::select! {
                () = cancel.cancelled() => break,
                m = stream.next() => m,
            };
            let Some(first) = first else { break };
            read.take(&mut pipeline, first);
            // Everything already fetched joins the batch; nothing waits for more.
            while read.messages + read.errors.len() < BATCH_MAX_UNITS {
                match stream.next().now_or_never() {
                    Some(Some(m)) => read.take(&mut pipeline, m),
                    _ => break,
                }
            }
        }
        for e in &read.errors {
            handle.metrics.source_error(&id);
            tracing::warn!(feed = %id, %topic, error = %e, "kafka source: consume failed");
        }
        if read.messages == 0 {
            if !read.errors.is_empty() && !sleep_or_cancel(backoff.next_delay(), &cancel).await {
                break;
            }
            continue;
        }
        backoff.reset();
        handle.metrics.set_up(&id, true);
        match commit(&handle, &read.batch, &cancel).await {
            Ok(true) => {}
            // Not durable: offsets stay, the messages are read again.
            Ok(false) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        let tpl = read.next_offsets();
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(feed = %id, error = %e, "kafka source: offset commit not sent; messages may be read again");
        }
        committed = Some(tpl);
    }
    if let Some(tpl) = committed {
        // The async commits may still be in flight; this one is waited for, so a restart of the
        // feed continues exactly after the last durable batch.
        let c = Arc::clone(&consumer);
        let done = tokio::time::timeout(
            FINAL_COMMIT_TIMEOUT,
            tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)),
        )
        .await;
        match done {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(feed = %id, error = %e, "kafka source: final offset commit failed"),
            Ok(Err(e)) => tracing::warn!(feed = %id, error = %e, "kafka source: final offset commit task failed"),
            Err(_) => tracing::warn!(feed = %id, "kafka source: final offset commit timed out"),
        }
    }
    // Closing leaves the group and can wait on the broker: not on an async worker thread.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    handle.metrics.set_up(&id, false);
    result
}

/// What one read took from the consumer.
#[derive(Default)]
struct Read {
    batch: Batch,
    /// Topic and partition → highest offset read.
    highest: BTreeMap<(String, i32), i64>,
    messages: usize,
    errors: Vec<KafkaError>,
}

impl Read {
    fn take(&mut self, pipeline: &mut FeedPipeline, message: KafkaResult<BorrowedMessage<'_>>) {
        let m = match message {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(e);
                return;
            }
        };
        self.messages += 1;
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let highest = self.highest.entry((topic.to_owned(), partition)).or_insert(offset);
        *highest = (*highest).max(offset);
        // A message without a value (a tombstone) holds no records; its offset still counts.
        if let Some(payload) = m.payload() {
            let ctx = pipeline.context(now(), format!("kafka {topic}/{partition}@{offset}"));
            pipeline.decode_payload(payload, &ctx, &mut self.batch);
        }
    }

    /// The offsets to commit: one past the highest read, per partition.
    fn next_offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.highest {
            // Fails only for an invalid partition, which the broker just gave us.
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1));
        }
        tpl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_owns_offsets_and_group_whatever_the_properties_say() {
        let props: BTreeMap<String, String> = [
            ("enable.auto.commit", "true"),
            ("group.id", "sneaky"),
            ("security.protocol", "ssl"),
            ("auto.offset.reset", "latest"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let cfg = consumer_config("k:9092", "g1", &props);
        assert_eq!(cfg["enable.auto.commit"], "false");
        assert_eq!(cfg["enable.auto.offset.store"], "false");
        assert_eq!(cfg["group.id"], "g1");
        assert_eq!(cfg["bootstrap.servers"], "k:9092");
        assert_eq!(cfg["security.protocol"], "ssl", "other properties pass through");
        assert_eq!(cfg["auto.offset.reset"], "latest", "an explicit reset policy is kept");
        assert_eq!(consumer_config("k:9092", "g1", &BTreeMap::new())["auto.offset.reset"], "earliest");
    }
}
