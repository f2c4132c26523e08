//! The tamper suite, one list of cases run on both backends: a swept store,
//! then tampering done behind the vault's back — on the embedded store's
//! files with `rusqlite`, on PostgreSQL with SQL on its tables (as a
//! superuser where the ledger's trigger is in the way) — and `verify`
//! names each act at the right place. The PostgreSQL half needs a server
//! (`LETHE_TEST_PG_URL`, else the local service): it fails, never skips,
//! without one.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod postgres;
mod sqlite;
mod sqlite_only;

use common::{assert_deleted_key_entry_caught, key_gaps, now};
use harness::{KeyEdit, TamperExt, TamperTarget};
use lethe_vault::synth::{Synth, SynthReader};
use lethe_vault::Vault;

/// Records each store holds before the sweep (over 45 days).
const SWEPT_RECORDS: u64 = 6000;
/// The same on PostgreSQL, where each case builds its own store.
const SWEPT_RECORDS_PG: u64 = 3000;

/// Ingests `n` synthetic records over 45 days into `v` and sweeps at
/// [`now`]; asserts both kinds of removal happened and the store verifies.
fn swept(v: Vault, n: u64) -> Vault {
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(3, n, now(), 45)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.anonymized > 0, "{r:?}");
    let gaps = common::located(v.verify(None, None, now(), &|_| {}).unwrap());
    assert!(gaps.is_empty(), "clean before tampering: {gaps:#?}");
    v
}

/// The cases: each takes a fresh target.
mod cases {
    pub use super::filter_cases::*;
    pub use super::merkle_cases::*;
    use super::*;

    pub fn edit_one_byte_of_a_body_is_caught_at_that_record(c: &impl TamperTarget) {
        let run = c.live_run("requests:1");
        c.edit_record(&run, run.first + 5, |r| {
            let b = r.body.as_mut().expect("a live record has a body");
            let n = b.len();
            b[n - 20] ^= 1;
        });
        c.assert_caught(&run, &[run.first + 5], "MAC");
    }

    pub fn edit_a_plain_field_is_caught_at_that_record(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        c.edit_record(&run, run.first + 3, |r| {
            assert!(r.plain.contains("\"action\":\""), "{}", r.plain);
            r.plain = r.plain.replace("\"action\":\"", "\"action\":\"x");
        });
        c.assert_caught(&run, &[run.first + 3], "MAC");
    }

    pub fn delete_one_record_row_is_caught_as_missing(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        assert_eq!(c.remove_records(&run, run.first + 7, run.first + 7), 1);
        c.assert_caught(&run, &[run.first + 7], "missing");
    }

    pub fn delete_a_range_without_a_receipt_is_caught_at_its_start(c: &impl TamperTarget) {
        let run = c.live_run("requests:1");
        let (a, b) = (run.first + 2, run.first + 11);
        assert_eq!(c.remove_records(&run, a, b), 10);
        c.assert_caught(&run, &[a], "missing");
        let got = c.gaps();
        assert!(got[0].3.contains(&format!("{a}–{b}")), "{got:?}");
    }

    pub fn insert_a_forged_record_is_caught(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        // A copy of a real row, a new id, a sequence number no append gave out.
        let mut row = c.record(&run, run.first);
        row.seq = 9_999_999;
        row.id[0] ^= 0xff;
        c.put_record(&run, &row);
        c.assert_caught(&run, &[9_999_999], "not part of the chain");
    }

    pub fn swap_two_records_is_caught_at_both(c: &impl TamperTarget) {
        let run = c.live_run("requests:1");
        c.swap_records(&run, run.first + 4, run.first + 9);
        c.assert_caught(&run, &[run.first + 4, run.first + 9], "MAC");
    }

    pub fn truncate_the_newest_records_and_their_chain_head_is_caught(c: &impl TamperTarget) {
        let run = c.head_run("requests:1");
        let head = run.last;
        // Chain hashes are public computations: only the signed checkpoint
        // still tells.
        let new_head = c.record(&run, head - 2).prev;
        assert_eq!(c.remove_records(&run, head - 2, head), 3);
        c.set_chain_head(&run, head, head - 3, &new_head);
        // The frontier left in the catalog may also not fit the new head
        // (when the two sizes have different binary weights): named too,
        // on the same chain.
        let got = c.gaps();
        assert!(
            got.iter()
                .any(|g| g.0 == run.tenant && g.1 == run.stream && g.2 == head - 2 && g.3.contains("truncated")),
            "{got:#?}"
        );
        assert!(
            got.iter().all(|g| g.0 == run.tenant && g.1 == run.stream),
            "only that chain: {got:#?}"
        );
    }

    pub fn replace_a_checkpoint_is_caught(c: &impl TamperTarget) {
        let (seq, body) = c.ledger_entry("checkpoint");
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["checkpoint"]["root"] = serde_json::Value::String("ab".repeat(32));
        c.edit_ledger(seq, Some(&v.to_string()));
        c.assert_ledger_gap(seq, "edited");
    }

    pub fn edit_a_ledger_entry_is_caught_at_that_entry(c: &impl TamperTarget) {
        let (seq, body) = c.ledger_entry("receipt.sweep");
        c.edit_ledger(seq, Some(&body.replace("\"verified\":true", "\"verified\":false")));
        c.assert_ledger_gap(seq, "edited");
    }

    pub fn delete_a_ledger_entry_is_caught_and_the_keys_it_recorded_named(c: &impl TamperTarget) {
        let (seq, body) = c.ledger_entry("key.data_created");
        c.edit_ledger(seq, None);
        assert_deleted_key_entry_caught(&c.gaps(), seq, &body);
    }

    pub fn a_tombstone_without_a_receipt_is_caught(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        c.forge_tombstone(&run, run.first + 1);
        c.assert_caught(&run, &[run.first + 1], "without a receipt");
    }

    /// Someone with the ledger key (a buggy sweep, a rogue operator)
    /// records a proper-looking intent — under the suite's policy and
    /// `extra`, evaluated at `at`, written at `written` — and a receipt
    /// deleting one record, and tombstones it.
    fn forge_delete(c: &impl TamperTarget, extra: &str, at: i64, written: i64, run: &harness::Run, seq: u64) {
        {
            let v = c.open_with(extra);
            let version = v.note_policy("cli:mallory", now()).unwrap();
            let intent = v
                .record(
                    written,
                    "cli:mallory",
                    "sweep.intent",
                    None,
                    &serde_json::json!({"policy_version": version, "now_us": at, "tenant": null,
                        "chains": [{"tenant": run.tenant, "stream": run.stream, "dropped": [],
                                    "rows": [{"partition_start_us": 0, "action": "delete", "seqs": [[seq, seq]]}]}]}),
                )
                .unwrap();
            v.record(
                written,
                "cli:mallory",
                "receipt.sweep",
                None,
                &serde_json::json!({"intent": intent.seq}),
            )
            .unwrap();
        }
        c.forge_tombstone(run, seq);
    }

    pub fn a_removal_evaluated_at_a_later_time_than_it_was_written_is_caught(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        // `cleanup --now <years ahead>`: every record looks expired then.
        forge_delete(c, "", now() + 4 * 365 * 86_400_000_000, now(), &run, run.first + 1);
        c.assert_caught(&run, &[run.first + 1], "later than it was written");
    }

    pub fn a_receipt_claiming_records_its_policy_keeps_is_caught(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        forge_delete(c, "", now(), now(), &run, run.first + 3);
        c.assert_caught(&run, &[run.first + 3], "keeps records from");
    }

    pub fn a_delete_under_an_archive_policy_without_an_archive_run_is_caught(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        // The policy in force archives audit events first; the forged
        // intent deletes one without an archive run.
        let archive = "[[retention.policy]]\nstream = \"audit\"\nwindow = \"1h\"\naction = \"archive_then_delete\"\narchive_window = \"forever\"\n";
        let at = now() + 60 * 86_400_000_000;
        forge_delete(c, archive, at, at, &run, run.first + 3);
        c.assert_caught(&run, &[run.first + 3], "names no archive run");
    }

    pub fn a_receipt_claiming_more_removals_than_its_intent_made_is_caught(c: &impl TamperTarget) {
        let v = c.open();
        // Two cleanups that both claim the same removals (what two runs at
        // once used to do): a second intent listing what the first
        // removed, and its receipt counting it again.
        let (_, intent) = c.ledger_entry("sweep.intent");
        let again = v
            .record(
                now(),
                "cli:mallory",
                "sweep.intent",
                None,
                &serde_json::from_str(&intent).unwrap(),
            )
            .unwrap();
        let receipt = v
            .record(
                now(),
                "cli:mallory",
                "receipt.sweep",
                None,
                &serde_json::json!({"intent": again.seq, "deleted": 10_098, "anonymized": 0, "verified": true}),
            )
            .unwrap();
        drop(v);
        let got = c.gaps();
        assert!(
            got.iter()
                .any(|g| g.1 == "(ledger)" && g.2 == receipt.seq && g.3.contains("claims 10098 records removed")),
            "{got:#?}"
        );
        // A second receipt for one intent is caught too.
        let forged = c
            .open()
            .record(
                now(),
                "cli:mallory",
                "receipt.sweep",
                None,
                &serde_json::json!({"intent": again.seq, "deleted": 0, "anonymized": 0}),
            )
            .unwrap();
        let got = c.gaps();
        assert!(
            got.iter().any(|g| g.2 == forged.seq && g.3.contains("second receipt")),
            "{got:#?}"
        );
    }

    pub fn delete_a_data_key_row_is_caught_at_the_key_and_every_record_under_it(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        let (id, seqs) = c.keys_of(&run).swap_remove(0);
        c.edit_key(id, KeyEdit::Delete);
        let got = c.gaps();
        assert!(
            got.iter().any(|g| g.0 == run.tenant
                && g.1 == "(keys)"
                && g.2 == id as u64
                && g.3.contains("missing from the key table")),
            "{got:#?}"
        );
        for seq in seqs {
            assert!(
                got.iter()
                    .any(|g| g.0 == run.tenant && g.1 == run.stream && g.2 == seq && g.3.contains("missing")),
                "record {seq}: {got:#?}"
            );
        }
    }

    pub fn destroy_a_data_key_without_a_purge_is_caught_as_an_unrecorded_erasure(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        let (id, _) = c.keys_of(&run).swap_remove(0);
        c.edit_key(id, KeyEdit::Destroy);
        let got = c.gaps();
        assert!(
            key_gaps(&got, id)
                .iter()
                .any(|g| g.3.contains("no receipted erasure destroyed it")),
            "{got:#?}"
        );
    }

    pub fn flip_a_byte_of_a_wrapped_key_is_caught_as_a_key_that_does_not_open(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        let (id, _) = c.keys_of(&run).swap_remove(0);
        let mut w = c.wrapped_key(id).expect("a live key");
        w[20] ^= 0xff;
        c.edit_key(id, KeyEdit::Wrapped(w));
        let got = c.gaps();
        assert!(
            key_gaps(&got, id)
                .iter()
                .any(|g| g.1 == "(keys)" && g.3.contains("does not open")),
            "{got:#?}"
        );
    }

    pub fn swap_two_wrapped_keys_is_caught_at_both(c: &impl TamperTarget) {
        let run = c.live_run("audit:1");
        let keys = c.keys_of(&run);
        let (a, b) = (keys[0].0, keys[1].0);
        let (wa, wb) = (c.wrapped_key(a).unwrap(), c.wrapped_key(b).unwrap());
        c.edit_key(a, KeyEdit::Wrapped(wb));
        c.edit_key(b, KeyEdit::Wrapped(wa));
        let got = c.gaps();
        for id in [a, b] {
            assert!(
                key_gaps(&got, id)
                    .iter()
                    .any(|g| g.1 == "(keys)" && g.3.contains("does not open")),
                "key {id}: {got:#?}"
            );
        }
    }
}

/// More cases: the index erasures find a subject's rows through.
mod filter_cases {
    use super::*;

    pub fn a_subject_filter_forged_to_name_nobody_is_caught_at_the_records_it_hides(c: &impl TamperTarget) {
        let run = c.live_run("requests:1");
        // An empty filter with the checksum that makes it look intact: a
        // damaged one (checksum wrong) is never trusted, so this is the
        // forgery that would hide a subject from an erasure.
        let bits = vec![0u8; 64];
        let h = lethe_core::merkle::leaf_hash(&bits);
        let version = (u64::from_be_bytes(h[..8].try_into().unwrap()) >> 1) as i64;
        assert!(
            c.put_subject_filter(run.part, &bits, version),
            "the partition has a filter"
        );
        let got = c.gaps();
        assert!(!got.is_empty(), "the forged filter must be caught");
        for g in &got {
            assert_eq!(
                (g.0.as_str(), g.1.as_str()),
                (run.tenant.as_str(), run.stream.as_str()),
                "{got:#?}"
            );
            assert!(g.3.contains("subject filter does not name"), "{got:#?}");
            let row = c.read_record(&run, g.2).expect("a record of the forged partition");
            assert!(row.pseudonym.is_some(), "{got:#?}");
        }
    }
}

/// More cases: the stored heads that stand for removed records.
mod merkle_cases {
    use super::*;

    pub fn flipping_the_merkle_heads_over_removed_records_is_caught_at_a_checkpoint(c: &impl TamperTarget) {
        assert!(
            c.flip_merkle_nodes() > 0,
            "the swept store keeps heads over what it removed"
        );
        let got = c.gaps();
        assert!(!got.is_empty(), "forged heads over a removed range must be caught");
        for g in &got {
            assert!(
                g.3.contains("tree head over records") && g.3.contains("does not match"),
                "{got:#?}"
            );
        }
    }
}

/// One `#[test]` per case and backend: `sqlite::<case>` and `postgres::<case>`.
macro_rules! tamper_suite {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(&super::sqlite::SqliteTarget::new());
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(&super::postgres::PgTarget::new(&super::common::pg::case_name(stringify!($case))));
                }
            )*
        }
    };
}

tamper_suite!(
    edit_one_byte_of_a_body_is_caught_at_that_record,
    edit_a_plain_field_is_caught_at_that_record,
    delete_one_record_row_is_caught_as_missing,
    delete_a_range_without_a_receipt_is_caught_at_its_start,
    insert_a_forged_record_is_caught,
    swap_two_records_is_caught_at_both,
    truncate_the_newest_records_and_their_chain_head_is_caught,
    replace_a_checkpoint_is_caught,
    edit_a_ledger_entry_is_caught_at_that_entry,
    delete_a_ledger_entry_is_caught_and_the_keys_it_recorded_named,
    a_tombstone_without_a_receipt_is_caught,
    a_removal_evaluated_at_a_later_time_than_it_was_written_is_caught,
    a_receipt_claiming_records_its_policy_keeps_is_caught,
    a_delete_under_an_archive_policy_without_an_archive_run_is_caught,
    a_receipt_claiming_more_removals_than_its_intent_made_is_caught,
    delete_a_data_key_row_is_caught_at_the_key_and_every_record_under_it,
    destroy_a_data_key_without_a_purge_is_caught_as_an_unrecorded_erasure,
    flip_a_byte_of_a_wrapped_key_is_caught_as_a_key_that_does_not_open,
    swap_two_wrapped_keys_is_caught_at_both,
    a_subject_filter_forged_to_name_nobody_is_caught_at_the_records_it_hides,
    flipping_the_merkle_heads_over_removed_records_is_caught_at_a_checkpoint,
);
