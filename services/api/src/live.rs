//! Live push: Server-Sent Events from the tenant's observations or events topic, filtered by box
//! and feed.
//!
//! Each client gets its own Kafka consumer, assigned (no group, nothing committed) to the current
//! end of every partition and reading `read_committed` (the processor writes in transactions).
//! Records flow through a bounded per-client buffer: a client that falls behind is dropped with a
//! final `dropped` event saying why, and because no client shares a consumer or buffer with
//! another, a slow one never holds anyone else back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::sse::Event as SseEvent;
use futures::Stream;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::params::Bbox;
use crate::problem::ApiError;

/// What a client filters on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFilter {
    /// Only features whose position is inside.
    pub bbox: Option<Bbox>,
    /// Only features of this feed.
    pub feed: Option<String>,
}

impl LiveFilter {
    /// Whether a record (a GeoJSON Feature as bytes) passes. Records that are not Features (or
    /// have no position while a box is asked for) do not.
    pub fn accepts(&self, feature: &Value) -> bool {
        if let Some(feed) = &self.feed
            && feature.pointer("/properties/feed").and_then(Value::as_str) != Some(feed.as_str())
        {
            return false;
        }
        match self.bbox {
            None => feature.is_object(),
            Some(b) => crate::shape::position(feature).is_some_and(|[lon, lat]| b.contains(lon, lat)),
        }
    }
}

/// What a client receives.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveItem {
    /// The consumer is positioned; everything produced from now on is seen.
    Ready,
    /// A record that passed the filter.
    Feature(Value),
    /// The last item of a client that fell behind, with the reason.
    Dropped(String),
}

impl LiveItem {
    /// As a Server-Sent Event (`event: ready|feature|dropped`).
    pub fn to_sse(&self) -> SseEvent {
        match self {
            LiveItem::Ready => {
                SseEvent::default().event("ready").data("following from the current end of each partition")
            }
            LiveItem::Feature(f) => SseEvent::default().event("feature").data(f.to_string()),
            LiveItem::Dropped(why) => SseEvent::default().event("dropped").data(why),
        }
    }
}

/// Records a client may have waiting before it is dropped.
pub const CLIENT_BUFFER: usize = 1024;

/// Opens the stream for one client (holding `slot`, its share of the client limit, until the
/// stream ends): the consumer is positioned at the current end of every
/// partition before this returns, so everything produced after the answer's headers is delivered.
pub async fn open(
    kafka: &BTreeMap<String, String>,
    topic: &str,
    filter: LiveFilter,
    buffer: usize,
    slot: Option<OwnedSemaphorePermit>,
) -> Result<impl Stream<Item = LiveItem> + use<>, ApiError> {
    let mut cfg = ClientConfig::new();
    for (k, v) in kafka {
        cfg.set(k, v);
    }
    // A group id is required by the client but never used: partitions are assigned, not
    // subscribed, and nothing is committed. Named after the topic so it falls under the tenant's
    // prefix, which the tenant's Kafka ACLs cover (and no other tenant's do).
    cfg.set("group.id", format!("{topic}.api-live"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    let consumer: StreamConsumer<geostream_kafka::Kept> =
        geostream_kafka::create(&cfg, ()).map_err(|e| ApiError::Kafka(format!("live consumer: {e}")))?;
    let consumer = Arc::new(consumer);
    let (c, t) = (Arc::clone(&consumer), topic.to_owned());
    let assignment = tokio::task::spawn_blocking(move || -> Result<TopicPartitionList, ApiError> {
        let md = c
            .fetch_metadata(Some(&t), Duration::from_secs(10))
            .map_err(|e| ApiError::Kafka(format!("metadata of {t}: {e}")))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|mt| mt.error().is_none())
            .flat_map(|mt| mt.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ApiError::NotFound(format!("topic {t} does not exist yet; nothing to follow")));
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            // The high watermark now, rather than Offset::End, which resolves only at the first
            // fetch and could skip records produced in between.
            let (_, high) = c
                .fetch_watermarks(&t, p, Duration::from_secs(10))
                .map_err(|e| ApiError::Kafka(format!("end of {t}/{p}: {e}")))?;
            tpl.add_partition_offset(&t, p, Offset::Offset(high))
                .map_err(|e| ApiError::Kafka(format!("assign {t}/{p}: {e}")))?;
        }
        Ok(tpl)
    })
    .await
    .map_err(|e| ApiError::Kafka(format!("live set-up task: {e}")))??;
    consumer.assign(&assignment).map_err(|e| ApiError::Kafka(format!("assign {topic}: {e}")))?;

    let (tx, rx) = mpsc::channel::<Value>(buffer.max(1));
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    tokio::spawn(async move {
        // The client's slot is held for as long as its consumer runs.
        let _slot = slot;
        loop {
            // Waiting on the client's side too: a client that went away while the topic is quiet
            // must not keep its consumer until the next record.
            let msg = tokio::select! {
                () = tx.closed() => break,
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "live consumer error");
                    continue;
                }
            };
            let Some(feature) = msg.payload().and_then(|p| serde_json::from_slice::<Value>(p).ok()) else {
                continue;
            };
            if !filter.accepts(&feature) {
                continue;
            }
            match tx.try_send(feature) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    flag.store(true, Ordering::SeqCst);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    let events = futures::stream::unfold((rx, dropped, false), |(mut rx, dropped, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(feature) => Some((LiveItem::Feature(feature), (rx, dropped, false))),
            None if dropped.load(Ordering::SeqCst) => {
                let why = format!(
                    "the client fell more than {} records behind; reconnect to continue from the current end",
                    rx.max_capacity()
                );
                Some((LiveItem::Dropped(why), (rx, dropped, true)))
            }
            None => None,
        }
    });
    Ok(futures::StreamExt::chain(futures::stream::once(async { LiveItem::Ready }), events))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn filters() {
        let f = |lon: f64, feed: &str| json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, 1.0]}, "properties": {"feed": feed}});
        let all = LiveFilter::default();
        assert!(all.accepts(&f(0.0, "a")));
        assert!(!all.accepts(&json!(3)));
        let boxed = LiveFilter { bbox: Some(Bbox { west: -1.0, south: 0.0, east: 1.0, north: 2.0 }), feed: None };
        assert!(boxed.accepts(&f(0.5, "a")) && !boxed.accepts(&f(1.5, "a")));
        assert!(!boxed.accepts(&json!({"geometry": null, "properties": {}})));
        let fed = LiveFilter { feed: Some("a".into()), ..boxed };
        assert!(fed.accepts(&f(0.5, "a")) && !fed.accepts(&f(0.5, "b")));
    }
}
