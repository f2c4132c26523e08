//! Legal holds: which records a hold covers. A held record is never deleted,
//! anonymized or erased until the hold is released or expires.

use serde::{Deserialize, Serialize};

/// What a legal hold covers: always one tenant, optionally narrowed to a
/// subject (by pseudonym), a scope and an event-time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldScope {
    /// Tenant.
    pub tenant: String,
    /// Only this subject's records (keyed pseudonym; never the subject id).
    #[serde(skip)]
    pub pseudonym: Option<[u8; 32]>,
    /// Whether the hold names a subject (kept in the ledger, where the
    /// pseudonym itself is not).
    #[serde(default)]
    pub subject: bool,
    /// Only this scope.
    pub scope: Option<String>,
    /// Event time ≥ this (µs).
    pub since_us: Option<i64>,
    /// Event time < this (µs).
    pub until_us: Option<i64>,
}

impl HoldScope {
    /// Whether a record with these properties is covered.
    pub fn covers(&self, tenant: &str, pseudonym: Option<&[u8; 32]>, scope: &str, ts_us: i64) -> bool {
        self.tenant == tenant
            && match &self.pseudonym {
                Some(p) => pseudonym == Some(p),
                None => !self.subject,
            }
            && self.scope.as_deref().is_none_or(|s| s == scope)
            && self.since_us.is_none_or(|s| ts_us >= s)
            && self.until_us.is_none_or(|u| ts_us < u)
    }

    /// Whether some record of `tenant` with event time in `[start_us,
    /// end_us)` and one of `scopes` could be covered (whatever its subject).
    pub fn may_cover(&self, tenant: &str, scopes: &mut dyn Iterator<Item = &str>, start_us: i64, end_us: i64) -> bool {
        if self.tenant != tenant
            || self.since_us.is_some_and(|s| s >= end_us)
            || self.until_us.is_some_and(|u| u <= start_us)
        {
            return false;
        }
        let Some(s) = &self.scope else { return true };
        for x in scopes {
            if x == s {
                return true;
            }
        }
        false
    }

    /// Whether the hold covers records of a removed range whose subject
    /// is no longer known: true only for holds that name no subject.
    pub fn covers_anonymous(&self, tenant: &str, scope: &str, ts_us: i64) -> bool {
        !self.subject && self.pseudonym.is_none() && self.covers(tenant, None, scope, ts_us)
    }
}

/// A salted commitment to a set of subject ids, for ledger entries that
/// must not name the subjects: SHA-256 (hex) of the text
/// `lethe-subjects\n<salt>\n<tenant>\n` followed by each distinct subject id
/// (sorted) and a newline. Whoever keeps the salt (the operator, with the
/// ticket) can later show which subjects an entry covered — with standard
/// tools: `printf 'lethe-subjects\n%s\n%s\n%s\n' SALT TENANT SUBJECT | sha256sum`.
/// Without the salt the commitment reveals nothing, not even for guessable ids.
pub fn subject_commitment(salt_hex: &str, tenant: &str, subjects: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&String> = subjects.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut h = Sha256::new();
    h.update(format!("lethe-subjects\n{salt_hex}\n{tenant}\n"));
    for s in sorted {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    crate::merkle::to_hex(&h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold() -> HoldScope {
        HoldScope {
            tenant: "acme".into(),
            pseudonym: None,
            subject: false,
            scope: Some("chat".into()),
            since_us: Some(100),
            until_us: Some(200),
        }
    }

    #[test]
    fn a_hold_covers_its_tenant_scope_and_time_range_only() {
        let h = hold();
        assert!(h.covers("acme", None, "chat", 100));
        assert!(h.covers("acme", Some(&[1; 32]), "chat", 199));
        assert!(!h.covers("acme", None, "chat", 200));
        assert!(!h.covers("acme", None, "chat", 99));
        assert!(!h.covers("acme", None, "agents", 150));
        assert!(!h.covers("globex", None, "chat", 150));
    }

    #[test]
    fn a_subject_hold_covers_only_that_subjects_records() {
        let h = HoldScope {
            pseudonym: Some([7; 32]),
            subject: true,
            scope: None,
            since_us: None,
            until_us: None,
            ..hold()
        };
        assert!(h.covers("acme", Some(&[7; 32]), "any", 5));
        assert!(!h.covers("acme", Some(&[8; 32]), "any", 5));
        assert!(!h.covers("acme", None, "any", 5));
        assert!(!h.covers_anonymous("acme", "any", 5));
    }

    #[test]
    fn subject_commitments_match_the_documented_shell_recipe() {
        // printf 'lethe-subjects\n%s\n%s\n%s\n' 00ff acme user-1 | sha256sum
        let c = subject_commitment("00ff", "acme", &["user-1".into()]);
        use sha2::{Digest, Sha256};
        let want: [u8; 32] = Sha256::digest(b"lethe-subjects\n00ff\nacme\nuser-1\n").into();
        assert_eq!(c, crate::merkle::to_hex(&want));
        assert_eq!(
            subject_commitment("00ff", "acme", &["b".into(), "a".into(), "a".into()]),
            subject_commitment("00ff", "acme", &["a".into(), "b".into()])
        );
        assert_ne!(c, subject_commitment("00fe", "acme", &["user-1".into()]));
    }

    #[test]
    fn may_cover_checks_time_overlap_and_scopes() {
        let h = hold();
        assert!(h.may_cover("acme", &mut ["x", "chat"].into_iter(), 150, 300));
        assert!(!h.may_cover("acme", &mut ["x"].into_iter(), 150, 300));
        assert!(!h.may_cover("acme", &mut ["chat"].into_iter(), 200, 300));
        assert!(h.may_cover("acme", &mut ["chat"].into_iter(), 0, 101));
        assert!(!h.may_cover("acme", &mut ["chat"].into_iter(), 0, 100));
    }
}
