//! The catalog's own records beside the data: legal holds, restorations,
//! the run history and API keys.

use super::*;

/// A legal hold as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldRecord {
    /// Hold id.
    pub id: i64,
    /// What it covers.
    pub scope: lethe_core::hold::HoldScope,
    /// Why it was set.
    pub reason: String,
    /// Who set it.
    pub actor: String,
    /// When it was set (µs).
    pub created_us: i64,
    /// When it lapses by itself (µs), if ever.
    pub expires_us: Option<i64>,
    /// When it was released (µs).
    pub released_us: Option<i64>,
    /// Why it was released.
    pub release_reason: Option<String>,
    /// Ledger entry recording it (`hold.set`); `None` until written.
    pub ledger_seq: Option<u64>,
}

impl HoldRecord {
    /// Whether the hold is in force at `now_us`.
    pub fn active_at(&self, now_us: i64) -> bool {
        self.released_us.is_none() && self.expires_us.is_none_or(|e| e > now_us)
    }
}

/// Archived records brought back into the store for an investigation: a
/// set of copies kept apart from every chain, so that retention never
/// sweeps or archives them again and `verify` never counts them, removed
/// whole when the restoration expires (or by a purge that selects them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restoration {
    /// Restoration id.
    pub id: i64,
    /// The one tenant whose records it holds.
    pub tenant: String,
    /// When it was made (µs).
    pub created_us: i64,
    /// When the sweep removes it (µs).
    pub expires_us: i64,
    /// Records it holds.
    pub records: u64,
    /// What was restored and why (JSON, opaque to the store).
    pub note: String,
    /// The ledger entry that records it.
    pub ledger_seq: u64,
    /// Disk bytes it occupies.
    pub bytes: u64,
}

/// A run of the sweep (or later, other jobs) as kept in the run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// `cleanup`, `cleanup-dry-run`…
    pub kind: String,
    /// Start (µs).
    pub started_us: i64,
    /// End (µs).
    pub finished_us: i64,
    /// `success` or an error message.
    pub status: String,
    /// JSON summary.
    pub summary: String,
}

/// An API key as the catalog keeps it: its secret is never stored, only a
/// keyed hash of it, so a copy of the catalog lets nobody call the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessKey {
    /// Public part of the token (`lethe_<id>_<secret>`), unique.
    pub id: String,
    /// A name for people (what the key is for).
    pub name: String,
    /// Role name (`ingest`, `auditor`, `admin`, `super_admin`).
    pub role: String,
    /// Tenants the key may act on; `["*"]` for all.
    pub tenants: Vec<String>,
    /// Keyed hash of the secret (32 bytes).
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    /// Who made it.
    pub creator: String,
    /// When it was made (µs).
    pub created_us: i64,
    /// When it stops working by itself (µs), if ever.
    pub expires_us: Option<i64>,
    /// When it was last used (µs), to within the caller's throttle.
    pub last_used_us: Option<i64>,
    /// When it was revoked (µs).
    pub revoked_us: Option<i64>,
}
