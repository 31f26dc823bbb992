//! The Kafka output: each event produced to another topic (optionally on another cluster) with an
//! idempotent producer, keyed like the input record so per-track order carries over.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::OutputError;
use crate::retry::{FailReason, Failure, Outcome};
use crate::spec::{KafkaTarget, OutputName};
use crate::stage::Item;

/// How long librdkafka keeps trying one record before it reports a failure to us.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Produces events to one topic.
pub struct KafkaSender {
    producer: FutureProducer<geostream_kafka::Kept>,
    topic: String,
}

impl KafkaSender {
    /// Creates the producer (no network yet). `pipeline` holds the pipeline's own librdkafka
    /// properties, used unless the output names another cluster.
    pub fn new(
        name: &OutputName,
        target: &KafkaTarget,
        pipeline: &BTreeMap<String, String>,
    ) -> Result<Self, OutputError> {
        let mut cfg = ClientConfig::new();
        match &target.bootstrap {
            Some(b) => {
                cfg.set("bootstrap.servers", b);
            }
            None => {
                for (k, v) in pipeline {
                    cfg.set(k, v);
                }
            }
        }
        for (k, v) in &target.properties {
            cfg.set(k, v);
        }
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", MESSAGE_TIMEOUT.as_millis().to_string())
            .set("client.id", format!("geostream-outputs-{name}"));
        let producer = geostream_kafka::create(&cfg, ())
            .map_err(|e| OutputError::Config { output: name.to_string(), problem: format!("Kafka producer: {e}") })?;
        Ok(Self { producer, topic: target.topic.clone() })
    }

    /// Produces all `items` at once (the idempotent producer keeps their order) and reports each.
    pub async fn send_all(&self, items: &[&Item]) -> Vec<Outcome> {
        let sends = items.iter().map(|it| {
            let mut rec = FutureRecord::to(&self.topic).payload(&it.raw[..]);
            if let Some(k) = &it.key {
                rec = rec.key(&k[..]);
            }
            self.producer.send(rec, Timeout::After(MESSAGE_TIMEOUT))
        });
        futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(_) => Outcome::Delivered,
                Err((e, _)) => Outcome::Failed(Failure {
                    reason: if permanent(&e) { FailReason::BrokerRejected } else { FailReason::Broker },
                    detail: format!("produce to {}: {e}", self.topic),
                    retry_after: None,
                }),
            })
            .collect()
    }
}

/// Errors no retry can fix: the record itself is unacceptable to the topic.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_record_level_refusals_are_permanent() {
        assert!(permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)));
        assert!(!permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition)));
        assert!(!permanent(&KafkaError::Canceled));
    }
}
