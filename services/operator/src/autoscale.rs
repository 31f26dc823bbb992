//! VolumeAutoscalePolicy decisions, pure: given one PVC's facts (what the apiserver and the usage
//! source say) and what the policy remembered about it, what to do now.
//!
//! The order of the checks is the order of the guard rails: a volume that cannot be resized
//! (unbound, block mode, a StorageClass without expansion) is skipped before its usage is looked
//! at, so a full volume there is reported as skipped, never as a resize that would fail.

use crate::crd::VolumeAutoscalePolicySpec;
use crate::units::{format_quantity, parse_duration, parse_quantity};

/// The smallest step: growing by a percentage of a tiny volume must still make room.
const MIN_STEP: u64 = 1 << 20;

/// A policy with its quantities and durations parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Used percentage above which a volume needs room.
    pub used_percent_above: Option<f64>,
    /// Available bytes below which a volume needs room.
    pub available_below: Option<u64>,
    /// Used inode percentage above which a volume needs room.
    pub inodes_used_percent_above: Option<f64>,
    /// Seconds a condition must hold.
    pub for_s: i64,
    /// Growth in percent.
    pub percentage: u32,
    /// Largest request, bytes.
    pub max: u64,
    /// Seconds between resizes of one volume.
    pub cooldown_s: i64,
    /// Whether a person must approve the size.
    pub approval: bool,
}

impl Policy {
    /// Parses and checks a spec; the error names the field.
    pub fn from_spec(spec: &VolumeAutoscalePolicySpec) -> Result<Self, String> {
        let c = &spec.conditions;
        if c.used_percent_above.is_none() && c.available_below.is_none() && c.inodes_used_percent_above.is_none() {
            return Err("spec.conditions: give usedPercentAbove, availableBelow or inodesUsedPercentAbove".into());
        }
        for (field, v) in
            [("usedPercentAbove", c.used_percent_above), ("inodesUsedPercentAbove", c.inodes_used_percent_above)]
        {
            if let Some(p) = v
                && !(p > 0.0 && p < 100.0)
            {
                return Err(format!("spec.conditions.{field}: {p} is not between 0 and 100"));
            }
        }
        if spec.action.percentage == 0 {
            return Err("spec.action.percentage: must be at least 1".into());
        }
        Ok(Policy {
            used_percent_above: c.used_percent_above,
            available_below: c
                .available_below
                .as_deref()
                .map(parse_quantity)
                .transpose()
                .map_err(|e| format!("spec.conditions.availableBelow: {e}"))?,
            inodes_used_percent_above: c.inodes_used_percent_above,
            for_s: c
                .for_
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| format!("spec.conditions.for: {e}"))?
                .unwrap_or(0),
            percentage: spec.action.percentage,
            max: parse_quantity(&spec.action.max_size).map_err(|e| format!("spec.action.maxSize: {e}"))?,
            cooldown_s: parse_duration(spec.cooldown.as_deref().unwrap_or("10m"))
                .map_err(|e| format!("spec.cooldown: {e}"))?,
            approval: spec.approval_required,
        })
    }
}

/// Kubelet volume stats of a mounted volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// `kubelet_volume_stats_used_bytes`.
    pub used: u64,
    /// `kubelet_volume_stats_capacity_bytes` (the filesystem's size, not the request).
    pub capacity: u64,
    /// `kubelet_volume_stats_inodes_used`, when reported.
    pub inodes_used: Option<u64>,
    /// `kubelet_volume_stats_inodes`, when reported.
    pub inodes: Option<u64>,
}

impl Usage {
    /// Used percentage of the capacity.
    pub fn used_percent(&self) -> f64 {
        if self.capacity == 0 { 100.0 } else { self.used as f64 * 100.0 / self.capacity as f64 }
    }
}

/// One PVC as the apply step found it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Volume {
    /// The StorageClass has `allowVolumeExpansion: true`.
    pub expandable: bool,
    /// `volumeMode: Filesystem` (the default).
    pub filesystem: bool,
    /// `status.phase: Bound`.
    pub bound: bool,
    /// `spec.resources.requests.storage`, bytes.
    pub request: u64,
    /// `status.capacity.storage`, bytes.
    pub capacity: Option<u64>,
    /// A `Resizing` or `FileSystemResizePending` condition, or an allocated size above capacity.
    pub resize_condition: bool,
    /// None: no stats, i.e. the volume is not mounted by any pod.
    pub usage: Option<Usage>,
    /// What the namespace's ResourceQuotas still allow for `requests.storage`; None: no quota.
    pub quota_headroom: Option<u64>,
    /// The `geostream.io/approved-size` annotation.
    pub approved_size: Option<u64>,
    /// Since when the condition holds (remembered in the status).
    pub condition_since: Option<i64>,
    /// The operator's last resize of this volume (remembered in the status).
    pub last_resize: Option<i64>,
}

/// What to do with one volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A guard rail says the volume cannot or must not be resized.
    Skipped(String),
    /// No condition holds.
    Normal,
    /// A condition holds but not yet for the `for` duration.
    Pending {
        /// Seconds until it has held long enough.
        remaining_s: i64,
    },
    /// The last resize is too recent.
    CoolingDown {
        /// Seconds until the cool-down ends.
        remaining_s: i64,
    },
    /// The request is at the maximum already.
    AtMaximum,
    /// A resize has not finished (request above capacity, or a resize condition).
    ResizeInProgress,
    /// The namespace quota does not have room for the growth.
    QuotaExceeded {
        /// Bytes the growth needs.
        need: u64,
        /// Bytes the quota still allows.
        headroom: u64,
    },
    /// Waiting for `geostream.io/approved-size` to be set to the target (or more).
    AwaitingApproval {
        /// The size proposed.
        target: u64,
    },
    /// Patch the request.
    Resize {
        /// Request before.
        from: u64,
        /// Request after.
        to: u64,
    },
}

impl Decision {
    /// The status word for the volume.
    pub fn state(&self) -> &'static str {
        match self {
            Decision::Skipped(_) => "Skipped",
            Decision::Normal => "Normal",
            Decision::Pending { .. } => "Pending",
            Decision::CoolingDown { .. } => "CoolingDown",
            Decision::AtMaximum => "AtMaximum",
            Decision::ResizeInProgress => "ResizeInProgress",
            Decision::QuotaExceeded { .. } => "QuotaExceeded",
            Decision::AwaitingApproval { .. } => "AwaitingApproval",
            Decision::Resize { .. } => "Resized",
        }
    }

    /// The explanation for the status and the event.
    pub fn message(&self) -> String {
        match self {
            Decision::Skipped(why) => why.clone(),
            Decision::Normal => "no condition holds".into(),
            Decision::Pending { remaining_s } => {
                format!("condition holds; acting in {remaining_s}s if it keeps holding")
            }
            Decision::CoolingDown { remaining_s } => format!("resized recently; cool-down ends in {remaining_s}s"),
            Decision::AtMaximum => "the request is at the policy's maxSize".into(),
            Decision::ResizeInProgress => "a resize has not finished yet".into(),
            Decision::QuotaExceeded { need, headroom } => format!(
                "growth needs {} but the ResourceQuota allows {} more requests.storage",
                format_quantity(*need),
                format_quantity(*headroom)
            ),
            Decision::AwaitingApproval { target } => format!(
                "proposed size {t}; approve with the PVC annotation geostream.io/approved-size={t}",
                t = format_quantity(*target)
            ),
            Decision::Resize { from, to } => format!("resized {} -> {}", format_quantity(*from), format_quantity(*to)),
        }
    }
}

/// The decision and what to remember.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What to do.
    pub decision: Decision,
    /// Since when the condition holds (None: it does not, or a resize just answered it).
    pub condition_since: Option<i64>,
}

fn holds(p: &Policy, u: &Usage) -> bool {
    let avail = u.capacity.saturating_sub(u.used);
    p.used_percent_above.is_some_and(|t| u.used_percent() > t)
        || p.available_below.is_some_and(|t| avail < t)
        || p.inodes_used_percent_above.is_some_and(|t| match (u.inodes_used, u.inodes) {
            (Some(used), Some(total)) if total > 0 => used as f64 * 100.0 / total as f64 > t,
            _ => false,
        })
}

/// The size after one step: the percentage of the request (at least [`MIN_STEP`]), whole MiB, at
/// most `max`.
pub fn target(p: &Policy, request: u64) -> u64 {
    let step = (request / 100).saturating_mul(u64::from(p.percentage)).max(MIN_STEP);
    let raw = request.saturating_add(step);
    let mib = raw.div_ceil(MIN_STEP).saturating_mul(MIN_STEP);
    mib.min(p.max)
}

/// Decides for one volume at `now` (unix seconds).
pub fn decide(p: &Policy, v: &Volume, now: i64) -> Outcome {
    let skip = |why: &str| Outcome { decision: Decision::Skipped(why.into()), condition_since: None };
    if !v.bound {
        return skip("the PVC is not Bound");
    }
    if !v.filesystem {
        return skip("the PVC is a Block volume; only Filesystem volumes report usage");
    }
    if !v.expandable {
        return skip("its StorageClass does not allow volume expansion");
    }
    if v.resize_condition || v.capacity.is_some_and(|c| c < v.request) {
        return Outcome { decision: Decision::ResizeInProgress, condition_since: v.condition_since };
    }
    let Some(usage) = v.usage else {
        return skip("no volume stats: the volume is not mounted by a running pod");
    };
    if !holds(p, &usage) {
        return Outcome { decision: Decision::Normal, condition_since: None };
    }
    let since = v.condition_since.unwrap_or(now);
    let keep = |decision| Outcome { decision, condition_since: Some(since) };
    // At the maximum nothing can be done however long the condition holds: say so at once.
    if v.request >= p.max {
        return keep(Decision::AtMaximum);
    }
    if now - since < p.for_s {
        return keep(Decision::Pending { remaining_s: p.for_s - (now - since) });
    }
    if let Some(last) = v.last_resize
        && now - last < p.cooldown_s
    {
        return keep(Decision::CoolingDown { remaining_s: p.cooldown_s - (now - last) });
    }
    let to = target(p, v.request);
    if let Some(headroom) = v.quota_headroom
        && headroom < to - v.request
    {
        return keep(Decision::QuotaExceeded { need: to - v.request, headroom });
    }
    if p.approval && v.approved_size.is_none_or(|a| a < to) {
        return keep(Decision::AwaitingApproval { target: to });
    }
    Outcome { decision: Decision::Resize { from: v.request, to }, condition_since: None }
}

/// The StatefulSet and volumeClaimTemplate a PVC was made from (`<template>-<statefulset>-<ordinal>`,
/// the StatefulSet controller's naming), with the template's request. `sets` holds each
/// StatefulSet's name and its templates with their requests.
pub fn owning_template<'a>(pvc: &str, sets: &'a [(String, Vec<(String, u64)>)]) -> Option<(&'a str, &'a str, u64)> {
    sets.iter().find_map(|(sts, templates)| {
        templates.iter().find_map(|(tpl, size)| {
            let ordinal =
                pvc.strip_prefix(tpl.as_str())?.strip_prefix('-')?.strip_prefix(sts.as_str())?.strip_prefix('-')?;
            (!ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit())).then_some((
                sts.as_str(),
                tpl.as_str(),
                *size,
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crd::{ResizeAction, Selector, UsageCondition};

    const GI: u64 = 1 << 30;

    fn policy() -> Policy {
        Policy::from_spec(&VolumeAutoscalePolicySpec {
            selector: Selector::default(),
            namespace_selector: Selector::default(),
            conditions: UsageCondition {
                used_percent_above: Some(80.0),
                available_below: None,
                inodes_used_percent_above: None,
                for_: Some("5m".into()),
            },
            action: ResizeAction { percentage: 50, max_size: "20Gi".into() },
            cooldown: Some("1h".into()),
            approval_required: false,
        })
        .unwrap()
    }

    fn volume(used_gi: f64) -> Volume {
        Volume {
            expandable: true,
            filesystem: true,
            bound: true,
            request: 10 * GI,
            capacity: Some(10 * GI),
            usage: Some(Usage {
                used: (used_gi * GI as f64) as u64,
                capacity: 10 * GI,
                inodes_used: None,
                inodes: None,
            }),
            ..Volume::default()
        }
    }

    const NOW: i64 = 1_000_000;

    /// The scenario table: (name, policy change, volume, expected decision, expected memory).
    #[test]
    fn decision_table() {
        type Case = (&'static str, fn(&mut Policy), Volume, Decision, Option<i64>);
        let keep = |_: &mut Policy| {};
        let cases: Vec<Case> = vec![
            ("below threshold", keep, volume(7.0), Decision::Normal, None),
            ("exactly at threshold is not above", keep, volume(8.0), Decision::Normal, None),
            ("above, first seen: pending for 5m", keep, volume(9.0), Decision::Pending { remaining_s: 300 }, Some(NOW)),
            (
                "above for 4m: still pending",
                keep,
                Volume { condition_since: Some(NOW - 240), ..volume(9.0) },
                Decision::Pending { remaining_s: 60 },
                Some(NOW - 240),
            ),
            (
                "above for 5m: resize by 50%",
                keep,
                Volume { condition_since: Some(NOW - 300), ..volume(9.0) },
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
            (
                "dropped below: memory cleared",
                keep,
                Volume { condition_since: Some(NOW - 200), ..volume(5.0) },
                Decision::Normal,
                None,
            ),
            (
                "no for: resize at once",
                |p| p.for_s = 0,
                volume(9.0),
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
            (
                "growth capped at max",
                |p| p.max = 12 * GI,
                Volume { condition_since: Some(NOW - 600), ..volume(9.5) },
                Decision::Resize { from: 10 * GI, to: 12 * GI },
                None,
            ),
            (
                "at max: nothing",
                |p| p.max = 10 * GI,
                Volume { condition_since: Some(NOW - 600), ..volume(9.5) },
                Decision::AtMaximum,
                Some(NOW - 600),
            ),
            (
                "at max and only just full: at max, not pending",
                |p| p.max = 10 * GI,
                volume(9.5),
                Decision::AtMaximum,
                Some(NOW),
            ),
            (
                "cool-down after a resize",
                keep,
                Volume { condition_since: Some(NOW - 600), last_resize: Some(NOW - 1_800), ..volume(9.0) },
                Decision::CoolingDown { remaining_s: 1_800 },
                Some(NOW - 600),
            ),
            (
                "cool-down over",
                keep,
                Volume { condition_since: Some(NOW - 600), last_resize: Some(NOW - 3_600), ..volume(9.0) },
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
            (
                "quota too small",
                keep,
                Volume { condition_since: Some(NOW - 600), quota_headroom: Some(GI), ..volume(9.0) },
                Decision::QuotaExceeded { need: 5 * GI, headroom: GI },
                Some(NOW - 600),
            ),
            (
                "quota just enough",
                keep,
                Volume { condition_since: Some(NOW - 600), quota_headroom: Some(5 * GI), ..volume(9.0) },
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
            (
                "approval required, none given",
                |p| p.approval = true,
                Volume { condition_since: Some(NOW - 600), ..volume(9.0) },
                Decision::AwaitingApproval { target: 15 * GI },
                Some(NOW - 600),
            ),
            (
                "approval for a smaller size is not enough",
                |p| p.approval = true,
                Volume { condition_since: Some(NOW - 600), approved_size: Some(12 * GI), ..volume(9.0) },
                Decision::AwaitingApproval { target: 15 * GI },
                Some(NOW - 600),
            ),
            (
                "approved",
                |p| p.approval = true,
                Volume { condition_since: Some(NOW - 600), approved_size: Some(15 * GI), ..volume(9.0) },
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
            (
                "resize in progress: request above capacity",
                keep,
                Volume { request: 15 * GI, condition_since: Some(NOW - 600), ..volume(9.9) },
                Decision::ResizeInProgress,
                Some(NOW - 600),
            ),
            (
                "resize in progress: condition",
                keep,
                Volume { resize_condition: true, ..volume(9.9) },
                Decision::ResizeInProgress,
                None,
            ),
            (
                "unmounted: skipped",
                keep,
                Volume { usage: None, ..volume(0.0) },
                Decision::Skipped("no volume stats: the volume is not mounted by a running pod".into()),
                None,
            ),
            (
                "not bound: skipped even when full",
                keep,
                Volume { bound: false, ..volume(10.0) },
                Decision::Skipped("the PVC is not Bound".into()),
                None,
            ),
            (
                "block mode: skipped",
                keep,
                Volume { filesystem: false, ..volume(10.0) },
                Decision::Skipped("the PVC is a Block volume; only Filesystem volumes report usage".into()),
                None,
            ),
            (
                "class without expansion: skipped",
                keep,
                Volume { expandable: false, ..volume(10.0) },
                Decision::Skipped("its StorageClass does not allow volume expansion".into()),
                None,
            ),
            (
                "available below",
                |p| {
                    p.used_percent_above = None;
                    p.available_below = Some(2 * GI);
                    p.for_s = 0;
                },
                volume(8.5),
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
            (
                "inodes above",
                |p| {
                    p.used_percent_above = None;
                    p.inodes_used_percent_above = Some(90.0);
                    p.for_s = 0;
                },
                Volume {
                    usage: Some(Usage { used: 0, capacity: 10 * GI, inodes_used: Some(95), inodes: Some(100) }),
                    ..volume(0.0)
                },
                Decision::Resize { from: 10 * GI, to: 15 * GI },
                None,
            ),
        ];
        for (name, tweak, vol, want, since) in cases {
            let mut p = policy();
            tweak(&mut p);
            let out = decide(&p, &vol, NOW);
            assert_eq!(out.decision, want, "{name}");
            assert_eq!(out.condition_since, since, "{name}: remembered since");
            assert!(!out.decision.message().is_empty(), "{name}");
        }
    }

    #[test]
    fn claims_are_traced_to_their_statefulset_template() {
        let sets = vec![
            ("acme-geostream-ingest".to_owned(), vec![("data".to_owned(), 20 * GI)]),
            ("acme-geostream-process".to_owned(), vec![("data".to_owned(), 10 * GI), ("scratch".to_owned(), GI)]),
        ];
        assert_eq!(
            owning_template("data-acme-geostream-process-2", &sets),
            Some(("acme-geostream-process", "data", 10 * GI))
        );
        assert_eq!(
            owning_template("scratch-acme-geostream-process-0", &sets),
            Some(("acme-geostream-process", "scratch", GI))
        );
        assert_eq!(
            owning_template("data-acme-geostream-ingest-0", &sets),
            Some(("acme-geostream-ingest", "data", 20 * GI))
        );
        assert_eq!(owning_template("data-acme-geostream-ingest-x", &sets), None, "not an ordinal");
        assert_eq!(owning_template("data-acme-geostream-ingest-", &sets), None);
        assert_eq!(owning_template("other-volume", &sets), None);
    }

    #[test]
    fn small_volumes_grow_by_at_least_a_mebibyte_in_whole_mebibytes() {
        let p = Policy { percentage: 10, max: GI, ..policy() };
        assert_eq!(target(&p, 1 << 20), 2 << 20);
        assert_eq!(target(&p, 1000), 2 << 20, "1000 B + 1 MiB, rounded up to whole MiB");
        assert_eq!(target(&p, 100 << 20), 110 << 20);
    }

    #[test]
    fn specs_are_checked_with_the_field_named() {
        let base = VolumeAutoscalePolicySpec {
            selector: Selector::default(),
            namespace_selector: Selector::default(),
            conditions: UsageCondition::default(),
            action: ResizeAction { percentage: 20, max_size: "1Ti".into() },
            cooldown: None,
            approval_required: false,
        };
        assert!(Policy::from_spec(&base).unwrap_err().contains("spec.conditions"));
        let mut s = base.clone();
        s.conditions.used_percent_above = Some(150.0);
        assert!(Policy::from_spec(&s).unwrap_err().contains("usedPercentAbove"));
        s.conditions.used_percent_above = Some(80.0);
        s.action.max_size = "lots".into();
        assert!(Policy::from_spec(&s).unwrap_err().contains("spec.action.maxSize"));
        s.action.max_size = "1Ti".into();
        s.conditions.for_ = Some("soon".into());
        assert!(Policy::from_spec(&s).unwrap_err().contains("spec.conditions.for"));
        s.conditions.for_ = None;
        let p = Policy::from_spec(&s).unwrap();
        assert_eq!((p.cooldown_s, p.for_s, p.max), (600, 0, 1 << 40));
    }
}
