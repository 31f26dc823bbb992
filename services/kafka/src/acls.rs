//! The Kafka ACLs one tenant's principal needs to run every geostream stage, and nothing of any
//! other tenant. Pure: the bindings are computed from the naming contract; applying them is left to
//! Kafka's own tools (`kafka-acls.sh`), since the client library offers no ACL admin calls.
//!
//! What the stages touch, per tenant `t` with topic prefix `p`:
//! - topics `p t.<kind>` (data, registries, dead letters, the processor's state): read, write, and
//!   create (every stage creates what it needs at start);
//! - the stages' consumer groups `geostream-t-process`, `-sink`, `-outputs`, `-archive`, named
//!   literally because tenant ids may contain '-': a prefix `geostream-t-` would also match the
//!   groups of tenant `t-x`;
//! - groups named after a topic (registry readers `p t.<kind>.reader`, ingest's spool recovery
//!   `p t.observations.ingest-recovery`, the API's followers `p t.<kind>.api-live`, `.api-local`,
//!   `.api-feed-status`), covered by the topic prefix `p t.`, which no other tenant's names start
//!   with (tenant ids contain no '.');
//! - the processor's transactional ids `p t.process.<instance>`, under the topic prefix `p t.` for
//!   the same reason.
//!
//! Idempotent producers need no cluster-level ACL on Kafka 3.0 and later (KIP-679): write access
//! to a topic is enough for `InitProducerId`.

use geostream_model::{Naming, Stage, TenantId, TopicKind};

/// A resource type of a Kafka ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// A transactional id.
    TransactionalId,
}

impl ResourceType {
    /// The `kafka-acls.sh` option naming a resource of this type.
    pub const fn option(self) -> &'static str {
        match self {
            ResourceType::Topic => "--topic",
            ResourceType::Group => "--group",
            ResourceType::TransactionalId => "--transactional-id",
        }
    }

    /// The name Kafka's admin API uses (`TOPIC`, `GROUP`, `TRANSACTIONAL_ID`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
        }
    }
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    /// The name exactly.
    Literal,
    /// Every name starting with it.
    Prefixed,
}

impl PatternType {
    /// The `--resource-pattern-type` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        }
    }

    fn matches(self, pattern: &str, name: &str) -> bool {
        match self {
            PatternType::Literal => pattern == name,
            PatternType::Prefixed => name.starts_with(pattern),
        }
    }
}

/// An operation an ACL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Fetch, join a group, commit offsets.
    Read,
    /// Produce; use a transactional id.
    Write,
    /// Create a topic.
    Create,
    /// Metadata; implied by Read and Write.
    Describe,
}

impl Operation {
    /// The `--operation` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Describe => "Describe",
        }
    }

    /// Whether allowing `self` also allows `other`, as Kafka's authorizer decides it.
    pub fn implies(self, other: Operation) -> bool {
        self == other || (other == Operation::Describe && matches!(self, Operation::Read | Operation::Write))
    }
}

/// One resource pattern and the operations allowed on it for a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBinding {
    /// `User:<name>`.
    pub principal: String,
    /// What kind of resource.
    pub resource: ResourceType,
    /// How `name` matches.
    pub pattern: PatternType,
    /// The resource name or prefix.
    pub name: String,
    /// What is allowed.
    pub operations: Vec<Operation>,
    /// Which stages need it and why, for operators reading the list.
    pub why: &'static str,
}

impl AclBinding {
    /// The `kafka-acls.sh` arguments adding this binding, after `--bootstrap-server` and
    /// `--command-config`.
    pub fn add_args(&self) -> Vec<String> {
        let mut args = vec!["--add".to_owned(), "--allow-principal".to_owned(), self.principal.clone()];
        for op in &self.operations {
            args.extend(["--operation".to_owned(), op.as_str().to_owned()]);
        }
        args.extend([
            self.resource.option().to_owned(),
            self.name.clone(),
            "--resource-pattern-type".to_owned(),
            self.pattern.as_str().to_owned(),
        ]);
        args
    }
}

/// A principal that cannot be given ACLs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid principal {principal:?}: {problem}")]
pub struct PrincipalError {
    /// What was given.
    pub principal: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn check_principal(principal: &str) -> Result<(), PrincipalError> {
    let fail = |problem| PrincipalError { principal: principal.to_owned(), problem };
    let Some(name) = principal.strip_prefix("User:") else {
        return Err(fail("it must be of the form User:<name>"));
    };
    if name.is_empty() || name == "*" {
        return Err(fail("the user name must be one user, not empty or '*'"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("the user name must not contain whitespace"));
    }
    Ok(())
}

/// The bindings the operator's `principal` needs to serve `tenant`: only its three registry topics
/// (the operator writes the feeds, fences and analytics declared as custom resources, creating a
/// topic that is missing) and their readers' groups, named literally. Not the tenant's data, dead
/// letters or state. One set per tenant the operator serves.
pub fn operator_acls(naming: &Naming, tenant: &TenantId, principal: &str) -> Result<Vec<AclBinding>, PrincipalError> {
    check_principal(principal)?;
    let mut out = Vec::new();
    for kind in [TopicKind::Feeds, TopicKind::Fences, TopicKind::Analytics] {
        let topic = naming.topic(tenant, kind);
        out.push(AclBinding {
            principal: principal.to_owned(),
            resource: ResourceType::Topic,
            pattern: PatternType::Literal,
            name: topic.clone(),
            operations: vec![Operation::Read, Operation::Write, Operation::Create],
            why: "operator: a registry topic it writes the custom resources to (created if missing)",
        });
        out.push(AclBinding {
            principal: principal.to_owned(),
            resource: ResourceType::Group,
            pattern: PatternType::Literal,
            name: format!("{topic}.reader"),
            operations: vec![Operation::Read],
            why: "operator: the group of its reader of that registry",
        });
    }
    Ok(out)
}

/// The bindings `principal` (`User:<name>`) needs to run every stage for `tenant`.
pub fn tenant_acls(naming: &Naming, tenant: &TenantId, principal: &str) -> Result<Vec<AclBinding>, PrincipalError> {
    check_principal(principal)?;
    let topic_prefix = format!("{}{}.", naming.topic_prefix(), tenant);
    let sink = naming.consumer_group(tenant, Stage::Sink);
    let group_base = sink.strip_suffix(Stage::Sink.as_str()).unwrap_or(&sink).to_owned();
    let binding = |resource, pattern, name: String, operations: Vec<Operation>, why| AclBinding {
        principal: principal.to_owned(),
        resource,
        pattern,
        name,
        operations,
        why,
    };
    use Operation::{Create, Read, Write};
    use PatternType::{Literal, Prefixed};
    use ResourceType::{Group, Topic, TransactionalId};
    Ok(vec![
        binding(
            Topic,
            Prefixed,
            topic_prefix.clone(),
            vec![Read, Write, Create],
            "every stage: the tenant's data, registry, dead-letter and state topics (created at start)",
        ),
        binding(
            Group,
            Prefixed,
            topic_prefix,
            vec![Read],
            "groups named after a topic: registry readers, ingest's spool recovery, the API's followers",
        ),
        binding(
            Group,
            Literal,
            naming.consumer_group(tenant, Stage::Process),
            vec![Read],
            "process: its consumer group",
        ),
        binding(Group, Literal, sink.clone(), vec![Read], "sink: its consumer group"),
        binding(Group, Literal, format!("{group_base}outputs"), vec![Read], "sink: the event outputs' group"),
        binding(Group, Literal, format!("{group_base}archive"), vec![Read], "sink: the archive's group"),
        binding(
            TransactionalId,
            Prefixed,
            naming.transactional_id_prefix(tenant, Stage::Process),
            vec![Write],
            "process: one transactional id per instance (<prefix><tenant>.process.<pod>)",
        ),
    ])
}

/// Whether `bindings` allow `op` on the named resource: the authorizer's decision for allow-only
/// ACLs, so tests can check a stage's every name against the list without a broker.
pub fn allows(bindings: &[AclBinding], resource: ResourceType, name: &str, op: Operation) -> bool {
    bindings.iter().any(|b| {
        b.resource == resource && b.pattern.matches(&b.name, name) && b.operations.iter().any(|o| o.implies(op))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tenant(t: &str) -> TenantId {
        t.parse().unwrap()
    }

    #[test]
    fn a_tenant_gets_its_names_and_not_a_neighbours_whose_id_extends_its_own() {
        let naming = Naming::new("prod.").unwrap();
        let acme = tenant("acme");
        let acls = tenant_acls(&naming, &acme, "User:acme").unwrap();
        for kind in TopicKind::ALL {
            let topic = naming.topic(&acme, *kind);
            for op in [Operation::Read, Operation::Write, Operation::Create, Operation::Describe] {
                assert!(allows(&acls, ResourceType::Topic, &topic, op), "{topic} {op:?}");
            }
        }
        for stage in [Stage::Process, Stage::Sink] {
            assert!(allows(&acls, ResourceType::Group, &naming.consumer_group(&acme, stage), Operation::Read));
        }
        assert!(allows(&acls, ResourceType::TransactionalId, "prod.acme.process.pod-0", Operation::Write));
        assert!(allows(&acls, ResourceType::Group, "prod.acme.fences.reader", Operation::Read));

        // `acme-ports` shares the `acme` prefix in group names; none of its names may be allowed.
        let ports = tenant("acme-ports");
        for stage in [Stage::Process, Stage::Sink, Stage::Ingest] {
            let g = naming.consumer_group(&ports, stage);
            assert!(!allows(&acls, ResourceType::Group, &g, Operation::Read), "{g}");
            assert!(!allows(&acls, ResourceType::Group, &g, Operation::Describe), "{g}");
        }
        for kind in TopicKind::ALL {
            let topic = naming.topic(&ports, *kind);
            assert!(!allows(&acls, ResourceType::Topic, &topic, Operation::Describe), "{topic}");
        }
        assert!(!allows(&acls, ResourceType::Topic, "acme.observations", Operation::Read), "another prefix");
        assert!(!allows(&acls, ResourceType::TransactionalId, "prod.acme-ports.process.0", Operation::Write));
        // A tenant named like this one's stage prefix: its transactional ids are its own too.
        let lookalike = naming.transactional_id(&tenant("acme-process-x"), Stage::Process, "0");
        assert!(!allows(&acls, ResourceType::TransactionalId, &lookalike, Operation::Write), "{lookalike}");
        assert!(!allows(&acls, ResourceType::Group, "geostream-acme-ports-outputs", Operation::Read));
    }

    #[test]
    fn the_operator_gets_a_tenants_registries_and_nothing_else() {
        let naming = Naming::new("prod.").unwrap();
        let acme = tenant("acme");
        let acls = operator_acls(&naming, &acme, "User:geostream-operator").unwrap();
        for kind in TopicKind::ALL {
            let topic = naming.topic(&acme, *kind);
            let registry = matches!(kind, TopicKind::Feeds | TopicKind::Fences | TopicKind::Analytics);
            for op in [Operation::Read, Operation::Write, Operation::Create, Operation::Describe] {
                assert_eq!(allows(&acls, ResourceType::Topic, &topic, op), registry, "{topic} {op:?}");
            }
            assert_eq!(allows(&acls, ResourceType::Group, &format!("{topic}.reader"), Operation::Read), registry);
        }
        for stage in [Stage::Process, Stage::Sink, Stage::Ingest] {
            assert!(!allows(&acls, ResourceType::Group, &naming.consumer_group(&acme, stage), Operation::Read));
        }
        assert!(!allows(&acls, ResourceType::TransactionalId, "prod.acme.process.pod-0", Operation::Write));
        let other = naming.topic(&tenant("acme-ports"), TopicKind::Feeds);
        assert!(!allows(&acls, ResourceType::Topic, &other, Operation::Describe), "{other}");
        assert!(operator_acls(&naming, &acme, "geostream-operator").is_err());
    }

    #[test]
    fn operations_imply_describe_only() {
        assert!(Operation::Read.implies(Operation::Describe));
        assert!(Operation::Write.implies(Operation::Describe));
        assert!(!Operation::Create.implies(Operation::Describe));
        assert!(!Operation::Read.implies(Operation::Write));
        assert!(!Operation::Write.implies(Operation::Read));
    }

    #[test]
    fn kafka_acls_arguments_name_every_operation_and_the_pattern_type() {
        let acls = tenant_acls(&Naming::default(), &tenant("acme"), "User:alice").unwrap();
        assert_eq!(
            acls[0].add_args(),
            [
                "--add",
                "--allow-principal",
                "User:alice",
                "--operation",
                "Read",
                "--operation",
                "Write",
                "--operation",
                "Create",
                "--topic",
                "acme.",
                "--resource-pattern-type",
                "prefixed"
            ]
        );
        let tx = acls.iter().find(|b| b.resource == ResourceType::TransactionalId).unwrap();
        assert_eq!(tx.add_args()[5..], ["--transactional-id", "acme.process.", "--resource-pattern-type", "prefixed"]);
    }

    #[test]
    fn principals_must_name_one_user() {
        let (n, t) = (Naming::default(), tenant("acme"));
        for bad in ["alice", "User:", "User:*", "Group:x", "User:a b"] {
            assert!(tenant_acls(&n, &t, bad).is_err(), "{bad}");
        }
    }
}
