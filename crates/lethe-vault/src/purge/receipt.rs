//! A purge's receipt: what it selected and removed, per store, and how it was checked — the body of its `receipt.purge` ledger entry.

use lethe_core::hold::subject_commitment;
use lethe_core::policy::Action;
use lethe_core::record::format_ts;
use lethe_store::ChainRemoval;

use super::{PurgeIntent, PurgePreview, PurgeReport, PurgeRequest};
use crate::Vault;

impl Vault {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn purge_receipt(
        &self,
        req: &PurgeRequest,
        preview: &PurgePreview,
        intent: &PurgeIntent,
        intent_seq: u64,
        continuation: Option<u64>,
        report: &PurgeReport,
        salt: Option<&str>,
        now_us: i64,
    ) -> serde_json::Value {
        let commitment = salt.map(|s| subject_commitment(s, req.tenant.as_str(), &req.subjects));
        serde_json::json!({
            "intent": intent_seq,
            "continuation": continuation,
            "ticket": req.ticket,
            "reason": req.reason,
            "actor": req.actor,
            "at": format_ts(now_us),
            "selection": {
                "tenant": req.tenant.as_str(),
                "subjects": preview.subjects,
                "subject_commitment": commitment,
                "stream": req.stream.as_ref().map(|s| s.to_string()),
                "scope": req.scope,
                "since": req.since_us.map(format_ts),
                "until": req.until_us.map(format_ts),
                "action": intent.action,
            },
            "selected": preview.selected,
            "removed": report.removed,
            "stored_while_running": report.stored_while_running,
            "stored_later": report.stored_later,
            "held": preview.held,
            "held_by": preview.held_by,
            "bytes": preview.bytes,
            "oldest": preview.oldest,
            "newest": preview.newest,
            "groups": preview.groups,
            "chains": chains_summary(&intent.chains),
            "keys_destroyed": intent.keys.len(),
            "restored_removed": report.restored_removed,
            "verified": report.verified,
            "verification": report.verification,
            "stores": self.stores_statement(intent.action, !intent.keys.is_empty(), &preview.keys),
        })
    }

    /// What the purge did per store, for the receipt.
    pub(super) fn stores_statement(&self, action: Action, keys_destroyed: bool, key_note: &str) -> serde_json::Value {
        let active = match action {
            Action::Delete => "deleted: bodies, personal fields and subject pseudonyms removed; headers kept as tombstones so the chain verifies",
            Action::Anonymize => "anonymized: subject linkage and personal fields removed; plain fields and the events kept",
        };
        let archive = if keys_destroyed {
            "unreadable by key destruction: any archived copy holds the personal fields only as ciphertext under the destroyed keys"
        } else {
            "not reached: no subject key was destroyed, so archived copies (if any) stay readable until their archive window ends"
        };
        let exports: Vec<serde_json::Value> = self
            .config
            .exports
            .iter()
            .map(|x| {
                serde_json::json!({
                    "name": x.name,
                    "destination": x.destination,
                    "retention": x.retention,
                    "status": if x.personal_in_clear || !keys_destroyed {
                        "outside Lethe's reach: erase there under its own process and retention"
                    } else {
                        "outside Lethe's reach; its copies of personal fields are ciphertext under the destroyed keys (unreadable)"
                    },
                })
            })
            .collect();
        let residue: serde_json::Map<String, serde_json::Value> = self
            .store
            .erasure_residue()
            .into_iter()
            .map(|(place, what)| (place.to_string(), what.into()))
            .collect();
        serde_json::json!({
            "active": active,
            "backend": residue,
            "restored": "restored copies (archive restore --into-store) of the selected records: removed or anonymized with them, except held ones; copies of destroyed keys' subjects are unreadable in any case",
            "keys": key_note,
            "archive": archive,
            "exports": exports,
            "backups": "backups of the data directory taken before this purge still hold the destroyed keys in wrapped form; they are unreadable without the master key, and are erased by rotating them out",
        })
    }
}

/// Per chain, what a purge removed, for its receipt: the number of records
/// and the sequence span (the exact ranges are in the intent the receipt
/// names — a batch purge lists up to millions).
pub(super) fn chains_summary(chains: &[ChainRemoval]) -> serde_json::Value {
    serde_json::Value::Array(
        chains
            .iter()
            .map(|c| {
                let ranges = c.rows.iter().flat_map(|r| r.seqs.iter());
                serde_json::json!({
                    "tenant": c.tenant,
                    "stream": c.stream,
                    "records": c.rows_listed(),
                    "ranges": ranges.clone().count(),
                    "first_seq": ranges.clone().map(|r| r[0]).min(),
                    "last_seq": ranges.map(|r| r[1]).max(),
                })
            })
            .collect(),
    )
}
