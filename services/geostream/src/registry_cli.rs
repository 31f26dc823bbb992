//! `geostream fences …` and `geostream analytics …`: the fence and analytic registries from a
//! terminal, declaratively. `apply FILE` makes the registry hold what the file says: new specs are
//! registered at version 1, changed ones get the next version, unchanged ones are left alone (so
//! running it twice writes nothing), and with `--prune` specs missing from the file are deleted.
//! Everything in the file is validated before anything is written.

use std::collections::BTreeSet;
use std::path::PathBuf;

use geostream_processor::registry::{Change, Registry, RegistrySpec, RegistryTopic, check_room};

/// The subcommands of both registries.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Make the registry hold the specs of a file (fences: a GeoJSON FeatureCollection of
    /// Polygons/MultiPolygons with `properties.id`, or a list of fence specs; analytics: a list of
    /// analytic specs or one spec, YAML or JSON).
    Apply {
        /// The file.
        file: PathBuf,
        /// Also delete registered specs the file does not contain.
        #[arg(long)]
        prune: bool,
        /// Validate and report what would change without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the registered specs.
    List {
        /// Print the specs as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a spec (a tombstone on the compacted topic).
    Delete {
        /// The id.
        id: String,
    },
}

/// Failures of the registry commands.
#[derive(Debug, thiserror::Error)]
pub enum RegistryCliError {
    /// Bad arguments or an unreadable file.
    #[error("{0}")]
    Usage(String),
    /// A spec in the file is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The spec is not registered.
    #[error("{0}")]
    State(String),
    /// Kafka could not be reached or refused.
    #[error(transparent)]
    Kafka(#[from] geostream_kafka::KafkaOpError),
}

impl RegistryCliError {
    /// The process exit code (sysexits): usage 64, invalid data 65, unavailable 69, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            RegistryCliError::Usage(_) => 64,
            RegistryCliError::Invalid(_) => 65,
            RegistryCliError::State(_) => 1,
            RegistryCliError::Kafka(_) => 69,
        }
    }
}

/// What `apply` does with each spec of the file, against what is registered. Pure.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T> {
    /// Not registered yet: written at version 1 (or the file's, if higher).
    Add(T),
    /// Registered with other content: written with the next version.
    Update(T),
    /// Registered with the same content.
    Keep(String),
    /// Registered but not in the file (only with `--prune`): a tombstone.
    Delete(String),
}

/// Plans `apply`: validates every spec of `wanted` first (all problems at once) and compares them
/// with `registered` ignoring versions.
pub fn plan<T: RegistrySpec>(wanted: Vec<T>, registered: &Registry<T>, prune: bool) -> Result<Vec<Step<T>>, String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &wanted {
        if !seen.insert(s.id().to_owned()) {
            problems.push(format!("{} {} is in the file twice", T::WHAT, s.id()));
        }
        if let Err(p) = s.check() {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let mut steps = Vec::new();
    for mut s in wanted {
        match registered.get(s.id()) {
            None => {
                s.set_version(s.version().max(1));
                steps.push(Step::Add(s));
            }
            Some(old) => {
                let mut same = s.clone();
                same.set_version(old.version());
                if same == *old {
                    steps.push(Step::Keep(s.id().to_owned()));
                } else {
                    s.set_version(s.version().max(old.version() + 1));
                    steps.push(Step::Update(s));
                }
            }
        }
    }
    if prune {
        for old in registered.specs() {
            if !seen.contains(old.id()) {
                steps.push(Step::Delete(old.id().to_owned()));
            }
        }
    }
    let before = registered.specs().count();
    let added = steps.iter().filter(|s| matches!(s, Step::Add(_))).count();
    let deleted = steps.iter().filter(|s| matches!(s, Step::Delete(_))).count();
    check_room::<T>(before, before + added - deleted)?;
    Ok(steps)
}

async fn read<T: RegistrySpec + Send + 'static>(topic: &RegistryTopic) -> Result<Registry<T>, RegistryCliError> {
    let (reg, refused) = match topic.read::<T>().await {
        Ok(read) => read,
        // A tenant that never registered anything has no topic yet: an empty registry.
        Err(e) if e.is_unknown_topic() => (Registry::default(), Vec::new()),
        Err(e) => return Err(e.into()),
    };
    for c in refused {
        if let Change::Invalid { key, problem } = c {
            eprintln!("geostream: warning: registry record for {key:?} ignored: {problem}");
        }
    }
    Ok(reg)
}

/// Runs a registry command for specs `T` read from files by `load`; returns what to print.
pub async fn run<T: RegistrySpec + Send + 'static>(
    cmd: RegistryCommand,
    topic: &RegistryTopic,
    load: impl Fn(&std::path::Path) -> Result<Vec<T>, String>,
    describe: impl Fn(&T) -> String,
) -> Result<String, RegistryCliError> {
    match cmd {
        RegistryCommand::Apply { file, prune, dry_run } => {
            let wanted = load(&file).map_err(RegistryCliError::Usage)?;
            if !dry_run {
                topic.ensure().await?;
            }
            let registered =
                if dry_run && topic.topic().is_empty() { Registry::default() } else { read(topic).await? };
            let steps = plan(wanted, &registered, prune).map_err(RegistryCliError::Invalid)?;
            let mut out = String::new();
            let mut kept = 0;
            // (id, JSON or None for a tombstone) of every change, written together below.
            let mut writes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
            for step in &steps {
                let line = match step {
                    Step::Add(s) => format!("added {} {} (version {})", T::WHAT, s.id(), s.version()),
                    Step::Update(s) => format!("updated {} {} (version {})", T::WHAT, s.id(), s.version()),
                    Step::Keep(id) => {
                        kept += 1;
                        format!("unchanged {} {id}", T::WHAT)
                    }
                    Step::Delete(id) => format!("deleted {} {id}", T::WHAT),
                };
                match step {
                    Step::Add(s) | Step::Update(s) => {
                        let v =
                            serde_json::to_vec(s).map_err(|e| RegistryCliError::Usage(format!("{}: {e}", s.id())))?;
                        writes.push((s.id().to_owned(), Some(v)));
                    }
                    Step::Delete(id) => writes.push((id.clone(), None)),
                    Step::Keep(_) => {}
                }
                out.push_str(&line);
                out.push('\n');
            }
            let changed = writes.len();
            if !dry_run && !writes.is_empty() {
                let records: Vec<(&str, Option<&[u8]>)> =
                    writes.iter().map(|(id, v)| (id.as_str(), v.as_deref())).collect();
                topic.put_all(&records).await?;
            }
            let verb = if dry_run { "would write" } else { "wrote" };
            out.push_str(&format!("{verb} {changed} change(s) to {}; {kept} unchanged\n", topic.topic()));
            Ok(out)
        }
        RegistryCommand::List { json } => {
            let reg = read::<T>(topic).await?;
            let mut out = String::new();
            for s in reg.specs() {
                if json {
                    out.push_str(&serde_json::to_string(s).unwrap_or_default());
                } else {
                    out.push_str(&format!("{}\tv{}\t{}", s.id(), s.version(), describe(s)));
                }
                out.push('\n');
            }
            if !json && reg.is_empty() {
                out.push_str(&format!("no {}s registered on {}\n", T::WHAT, topic.topic()));
            }
            Ok(out)
        }
        RegistryCommand::Delete { id } => {
            let reg = read::<T>(topic).await?;
            if reg.get(&id).is_none() {
                return Err(RegistryCliError::State(format!(
                    "{} {id:?} is not registered on {}",
                    T::WHAT,
                    topic.topic()
                )));
            }
            topic.put(&id, None).await?;
            Ok(format!("deleted {} {id} from {}\n", T::WHAT, topic.topic()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_analytics::spec::AnalyticSpec;

    fn spec(id: &str, threshold: u64, version: u64) -> AnalyticSpec {
        serde_json::from_value(serde_json::json!({
            "id": id, "version": version, "analytic": {"kind": "gaps", "threshold_s": threshold}
        }))
        .unwrap()
    }

    fn registered(specs: &[AnalyticSpec]) -> Registry<AnalyticSpec> {
        let mut r = Registry::default();
        for s in specs {
            assert!(r.apply(s.id.as_str().as_bytes(), Some(&serde_json::to_vec(s).unwrap())).changed());
        }
        r
    }

    #[test]
    fn apply_adds_updates_keeps_and_prunes() {
        let reg = registered(&[spec("a", 60, 3), spec("b", 60, 1), spec("old", 60, 1)]);
        let steps = plan(vec![spec("a", 60, 0), spec("b", 90, 0), spec("c", 30, 0)], &reg, true).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Keep("a".into()),
                Step::Update(spec("b", 90, 2)),
                Step::Add(spec("c", 30, 1)),
                Step::Delete("old".into()),
            ]
        );
        let steps = plan(vec![spec("a", 60, 0)], &reg, false).unwrap();
        assert_eq!(steps, vec![Step::Keep("a".into())], "no prune, no deletes");
    }

    #[test]
    fn a_fence_file_over_the_tenants_limit_is_refused_whole_and_a_prune_makes_room() {
        let fence = |i: usize| -> geostream_model::FenceSpec {
            serde_json::from_value(serde_json::json!({
                "id": format!("f{i:06}"), "name": "berth",
                "geometry": {"type": "Circle", "center": [10.0, 50.0], "radius_m": 100.0}
            }))
            .unwrap()
        };
        let max = geostream_model::MAX_FENCES_PER_TENANT;
        let at_limit: Vec<_> = (0..max).map(fence).collect();
        assert_eq!(plan(at_limit, &Registry::default(), false).unwrap().len(), max);

        let mut reg = Registry::default();
        for i in 0..3 {
            assert!(
                reg.apply(fence(i).id.as_str().as_bytes(), Some(&serde_json::to_vec(&fence(i)).unwrap())).changed()
            );
        }
        let wanted = || (3..max + 1).map(fence).collect::<Vec<_>>();
        let e = plan(wanted(), &reg, false).unwrap_err();
        assert!(e.contains(&format!("{} fences", max + 1)) && e.contains(&format!("limit is {max}")), "{e}");
        // The same file with --prune replaces the three registered fences: max - 2 in the end.
        let steps = plan(wanted(), &reg, true).unwrap();
        assert_eq!(steps.iter().filter(|s| matches!(s, Step::Delete(_))).count(), 3);
    }

    #[test]
    fn every_problem_is_reported_before_anything_is_written() {
        let e =
            plan(vec![spec("a", 0, 0), spec("b", 60, 0), spec("b", 60, 0)], &Registry::default(), false).unwrap_err();
        assert!(e.contains("threshold_s") && e.contains("analytic b is in the file twice"), "{e}");
    }
}
