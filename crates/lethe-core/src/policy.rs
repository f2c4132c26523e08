//! Policy evaluation: which retention rule and which capture mode apply to a
//! (tenant, stream, scope, classification), most specific selector first.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::Window;
use crate::model::{CaptureMode, Classification, StreamId, TenantId};

/// What a retention policy does to an expired record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Remove the record.
    Delete,
    /// Remove subject and personal fields and the pseudonym; keep the event.
    Anonymize,
}

impl Action {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Anonymize => "anonymize",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "delete" => Ok(Action::Delete),
            "anonymize" => Ok(Action::Anonymize),
            _ => Err(format!("unknown action `{s}` (expected delete or anonymize)")),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The four coordinates a policy selects on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Tenant.
    pub tenant: TenantId,
    /// Stream and version.
    pub stream: StreamId,
    /// Scope (app or route).
    pub scope: String,
    /// Data label.
    pub classification: Classification,
}

/// Which records a rule applies to; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Tenant.
    pub tenant: Option<TenantId>,
    /// Stream: `name` (any version) or `name:version`.
    pub stream: Option<String>,
    /// Scope.
    pub scope: Option<String>,
    /// Classification.
    pub classification: Option<Classification>,
}

impl Selector {
    /// Whether the selector matches a group.
    pub fn matches(&self, g: &GroupKey) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == g.tenant)
            && self.stream.as_ref().is_none_or(|s| match s.split_once(':') {
                Some(_) => *s == g.stream.to_string(),
                None => *s == g.stream.name,
            })
            && self.scope.as_ref().is_none_or(|s| *s == g.scope)
            && self.classification.is_none_or(|c| c == g.classification)
    }

    /// Specificity for "most specific wins": a bit per set coordinate, weighted
    /// tenant > stream > scope > classification, so that a tenant-wide rule
    /// beats a global rule on a classification, and more coordinates beat fewer.
    pub fn specificity(&self) -> u32 {
        let n = [
            self.tenant.is_some(),
            self.stream.is_some(),
            self.scope.is_some(),
            self.classification.is_some(),
        ];
        let count = n.iter().filter(|b| **b).count() as u32;
        let weight = (n[0] as u32) << 3 | (n[1] as u32) << 2 | (n[2] as u32) << 1 | n[3] as u32;
        count << 4 | weight
    }
}

/// Where a rule's expired records are copied before they are deleted
/// (`action = "archive_then_delete"`), and how long the copy is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRule {
    /// Name of the archive target (`[archive.targets.<name>]`).
    pub target: String,
    /// How long an archived record is kept, counted from its event time
    /// like `window` (so at least as long as it).
    pub window: Window,
}

/// A retention rule in evaluation form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    /// Name shown in plans and receipts.
    pub name: String,
    /// What it selects.
    pub selector: Selector,
    /// Disabled rules win selection but remove nothing.
    pub enabled: bool,
    /// How long records are kept.
    pub window: Window,
    /// What happens after the window.
    pub action: Action,
    /// With `Delete`: archive first (`archive_then_delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveRule>,
}

impl RetentionRule {
    /// The action as configured: `delete`, `anonymize` or `archive_then_delete`.
    pub fn action_name(&self) -> &'static str {
        match (&self.archive, self.action) {
            (Some(_), _) => "archive_then_delete",
            (None, a) => a.as_str(),
        }
    }
}

/// A capture rule in evaluation form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureRule {
    /// What it selects.
    pub selector: Selector,
    /// What is stored.
    pub mode: CaptureMode,
}

/// All capture and retention rules.
#[derive(Debug, Clone)]
pub struct PolicyBook {
    /// Applies where no other rule selects.
    pub default: RetentionRule,
    /// Selector rules.
    pub retention: Vec<RetentionRule>,
    /// Per-tenant settings made through the API: a tenant's override
    /// governs all of its records, before any selector rule (the
    /// configuration file's rules apply to tenants without one).
    pub overrides: Vec<RetentionRule>,
    /// Capture rules (default `full`).
    pub capture: Vec<CaptureRule>,
}

/// The retention part of a policy snapshot as the ledger records it
/// (`policy.version` entries): enough to decide again, later, what a sweep
/// was allowed to remove.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSnapshot {
    /// The default rule.
    pub default: RetentionRule,
    /// Selector rules.
    pub policies: Vec<RetentionRule>,
    /// Tenant settings made through the API (absent in older snapshots).
    #[serde(default)]
    pub overrides: Vec<RetentionRule>,
}

impl RetentionSnapshot {
    /// A policy book with these retention rules (and no capture rules).
    pub fn into_book(self) -> PolicyBook {
        PolicyBook {
            default: self.default,
            retention: self.policies,
            overrides: self.overrides,
            capture: Vec::new(),
        }
    }
}

/// The retention decision for one group at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The winning rule.
    pub rule: &'a RetentionRule,
    /// Records with event time before this (µs since epoch) are expired;
    /// `None` when nothing expires (disabled rule or `forever`).
    pub cutoff_us: Option<i64>,
}

impl PolicyBook {
    /// The retention rule that governs a group: the tenant's override if
    /// it has one, else the matching rule with the highest specificity;
    /// ties go to the rule declared first.
    pub fn retention_for(&self, g: &GroupKey) -> &RetentionRule {
        if let Some(o) = self.overrides.iter().find(|r| r.selector.matches(g)) {
            return o;
        }
        let mut best: Option<&RetentionRule> = None;
        for r in self.retention.iter().filter(|r| r.selector.matches(g)) {
            if best.is_none_or(|b| r.selector.specificity() > b.selector.specificity()) {
                best = Some(r);
            }
        }
        best.unwrap_or(&self.default)
    }

    /// The expiry class of a group's records: the window and action of the
    /// rule that governs it (`30d-delete`, `90d-anonymize`,
    /// `30d-archive-365d`, `forever`, `off` for a disabled rule). Records
    /// of one class expire together whatever their tenant, so the store
    /// keeps them in the same partition files and can drop those whole.
    pub fn expiry_class(&self, g: &GroupKey) -> String {
        let r = self.retention_for(g);
        if !r.enabled {
            return "off".into();
        }
        match (&r.window, &r.archive) {
            (crate::Window::Forever, _) => "forever".into(),
            (w, Some(a)) => format!("{w}-archive-{}", a.window),
            (w, None) => format!("{w}-{}", r.action.as_str()),
        }
    }

    /// What the sweep does to a group at `now_us`.
    pub fn decide(&self, g: &GroupKey, now_us: i64) -> Decision<'_> {
        let rule = self.retention_for(g);
        let cutoff_us = if rule.enabled { rule.window.cutoff(now_us) } else { None };
        Decision { rule, cutoff_us }
    }

    /// The capture mode for a group (default `full`).
    pub fn capture_for(&self, g: &GroupKey) -> CaptureMode {
        let mut best: Option<&CaptureRule> = None;
        for r in self.capture.iter().filter(|r| r.selector.matches(g)) {
            if best.is_none_or(|b| r.selector.specificity() > b.selector.specificity()) {
                best = Some(r);
            }
        }
        best.map(|r| r.mode).unwrap_or(CaptureMode::Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(tenant: &str, stream: &str, scope: &str, c: Classification) -> GroupKey {
        GroupKey {
            tenant: TenantId::new(tenant).unwrap(),
            stream: stream.parse().unwrap(),
            scope: scope.into(),
            classification: c,
        }
    }

    fn rule(name: &str, sel: Selector, days: u64, action: Action) -> RetentionRule {
        RetentionRule {
            name: name.into(),
            selector: sel,
            enabled: true,
            window: Window::Span(days * 86_400),
            action,
            archive: None,
        }
    }

    fn book(rules: Vec<RetentionRule>) -> PolicyBook {
        PolicyBook {
            default: rule("default", Selector::default(), 180, Action::Anonymize),
            retention: rules,
            overrides: vec![],
            capture: vec![],
        }
    }

    #[test]
    fn the_most_specific_matching_policy_wins() {
        let b = book(vec![
            rule(
                "requests",
                Selector {
                    stream: Some("requests".into()),
                    ..Default::default()
                },
                30,
                Action::Delete,
            ),
            rule(
                "acme-requests",
                Selector {
                    tenant: Some(TenantId::new("acme").unwrap()),
                    stream: Some("requests:1".into()),
                    ..Default::default()
                },
                7,
                Action::Delete,
            ),
            rule(
                "restricted",
                Selector {
                    classification: Some(Classification::Restricted),
                    ..Default::default()
                },
                1,
                Action::Delete,
            ),
        ]);
        assert_eq!(
            b.retention_for(&g("acme", "requests:1", "chat", Classification::Internal))
                .name,
            "acme-requests"
        );
        assert_eq!(
            b.retention_for(&g("beta", "requests:1", "chat", Classification::Internal))
                .name,
            "requests"
        );
        assert_eq!(
            b.retention_for(&g("beta", "audit:1", "chat", Classification::Restricted))
                .name,
            "restricted"
        );
        assert_eq!(
            b.retention_for(&g("beta", "audit:1", "chat", Classification::Public))
                .name,
            "default"
        );
        // stream (weight 4) beats classification (weight 1) at equal count
        assert_eq!(
            b.retention_for(&g("beta", "requests:1", "chat", Classification::Restricted))
                .name,
            "requests"
        );
    }

    #[test]
    fn disabled_policies_select_but_never_expire() {
        let mut r = rule(
            "off",
            Selector {
                scope: Some("keep".into()),
                ..Default::default()
            },
            1,
            Action::Delete,
        );
        r.enabled = false;
        let b = book(vec![r]);
        let d = b.decide(
            &g("a", "audit:1", "keep", Classification::Public),
            1_000_000_000_000_000,
        );
        assert_eq!((d.rule.name.as_str(), d.cutoff_us), ("off", None));
    }

    #[test]
    fn a_tenant_override_governs_every_record_of_its_tenant_only() {
        let per_stream = rule(
            "acme-requests",
            Selector {
                tenant: Some(TenantId::new("acme").unwrap()),
                stream: Some("requests".into()),
                ..Default::default()
            },
            7,
            Action::Delete,
        );
        let mut b = book(vec![per_stream]);
        b.overrides.push(rule(
            "api:acme",
            Selector {
                tenant: Some(TenantId::new("acme").unwrap()),
                ..Default::default()
            },
            90,
            Action::Delete,
        ));
        let acme = g("acme", "requests:1", "chat", Classification::Restricted);
        assert_eq!(b.retention_for(&acme).name, "api:acme");
        assert_eq!(
            b.retention_for(&g("beta", "requests:1", "chat", Classification::Public))
                .name,
            "default"
        );
    }

    #[test]
    fn cutoff_moves_with_now() {
        let b = book(vec![]);
        let now = 400 * 86_400_000_000i64;
        assert_eq!(
            b.decide(&g("a", "audit:1", "s", Classification::Public), now).cutoff_us,
            Some(220 * 86_400_000_000)
        );
    }
}
