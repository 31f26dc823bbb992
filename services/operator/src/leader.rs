//! Leader election on a coordination.k8s.io Lease: one replica reconciles, the others wait.
//! The decision is pure; the shell reads and replaces the Lease with optimistic concurrency (the
//! resourceVersion), so two candidates can never both win one round.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// What a candidate does with the lease it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, or the holder stopped renewing: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and renews.
    Wait,
}

/// Decides for `me` given the lease's holder and last renewal (unix seconds).
pub fn decide(holder: Option<&str>, renewed: Option<i64>, duration_s: i64, me: &str, now: i64) -> Step {
    match holder {
        Some(h) if h == me => Step::Renew,
        Some(h) if !h.is_empty() && renewed.is_some_and(|r| now - r < duration_s) => Step::Wait,
        _ => Step::Acquire,
    }
}

/// A candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration_s: i64,
}

impl Elector {
    /// A candidate `identity` (the pod name) for lease `name` in the lease namespace of `api`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration_s: i64) -> Self {
        Self { api, name: name.into(), identity: identity.into(), duration_s }
    }

    /// How long a lease lasts without renewal.
    pub fn duration_s(&self) -> i64 {
        self.duration_s
    }

    /// One round: returns whether we hold the lease afterwards. A lost race (409) is not an error.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        let step = decide(
            spec.holder_identity.as_deref(),
            spec.renew_time.as_ref().map(|t| t.0.as_second()),
            self.duration_s,
            &self.identity,
            now.as_second(),
        );
        if step == Step::Wait {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(step == Step::Acquire);
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: current.as_ref().and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: i32::try_from(self.duration_s).ok(),
                acquire_time: if step == Step::Acquire { Some(MicroTime(now)) } else { spec.acquire_time },
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        };
        let result = match current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => self.api.replace(&self.name, &PostParams::default(), &lease).await,
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_steps() {
        assert_eq!(decide(None, None, 15, "a", 100), Step::Acquire);
        assert_eq!(decide(Some(""), Some(99), 15, "a", 100), Step::Acquire);
        assert_eq!(decide(Some("a"), Some(0), 15, "a", 100), Step::Renew, "ours even if late");
        assert_eq!(decide(Some("b"), Some(90), 15, "a", 100), Step::Wait);
        assert_eq!(decide(Some("b"), Some(85), 15, "a", 100), Step::Acquire, "b stopped renewing");
        assert_eq!(decide(Some("b"), None, 15, "a", 100), Step::Acquire);
    }
}
