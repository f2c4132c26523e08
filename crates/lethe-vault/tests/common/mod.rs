//! Helpers shared by the vault's integration tests.

use std::path::Path;

use lethe_core::config::{self, Config, Source};
use lethe_core::record::parse_ts;
use lethe_core::TenantId;
use lethe_vault::logs::LogQuery;
use lethe_vault::{MasterKeySource, Vault};
use serde_json::Value;

#[allow(dead_code)]
pub mod pg;

/// The instant the tests evaluate policies at.
pub const NOW: &str = "2026-06-01T00:00:00Z";

/// [`NOW`] in µs.
pub fn now() -> i64 {
    parse_ts(NOW).unwrap()
}

/// A configuration from TOML text over the built-in defaults.
pub fn cfg(extra: &str) -> Config {
    config::load(
        Source {
            name: "test",
            text: extra,
        },
        None,
        &[],
    )
    .unwrap()
}

/// Opens (creating) a vault in `dir` with its key file there.
pub fn open(dir: &Path, c: Config) -> Vault {
    Vault::open(
        dir,
        c,
        &MasterKeySource::File {
            path: dir.join("master.key"),
            create: true,
        },
    )
    .unwrap()
}

/// Every record of a tenant (optionally one subject's), decrypted, oldest first.
#[allow(dead_code)]
pub fn logs(v: &Vault, tenant: &str, subject: Option<&str>) -> Vec<Value> {
    read_logs(v, tenant, subject, false)
}

/// Every live record (or, `restored`, every restored copy) of a tenant,
/// optionally one subject's, decrypted, oldest first.
#[allow(dead_code)]
pub fn read_logs(v: &Vault, tenant: &str, subject: Option<&str>, restored: bool) -> Vec<Value> {
    let q = LogQuery {
        tenant: TenantId::new(tenant).unwrap(),
        stream: None,
        scope: None,
        subject: subject.map(String::from),
        since_us: None,
        until_us: None,
        limit: None,
        ascending: true,
        restored,
    };
    let mut out = Vec::new();
    v.logs(&q, now(), &mut |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

/// Every file under `dir`, sorted (none if it does not exist).
#[allow(dead_code)]
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files under `dir` whose bytes contain `needle`.
#[allow(dead_code)]
pub fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).unwrap().windows(needle.len()).any(|w| w == needle))
        .map(|p| p.display().to_string())
        .collect()
}

/// A vault in `dir` (configuration `extra`) holding `n` synthetic records
/// over `days` days before [`NOW`], from generator seed `seed`.
#[allow(dead_code)]
pub fn vault_with_synth(dir: &Path, extra: &str, seed: u64, n: u64, days: u32) -> Vault {
    let v = open(dir, cfg(extra));
    ingest_synth(&v, seed, n, days);
    v
}

/// Ingests `n` synthetic records over `days` days before [`NOW`] (seed
/// `seed`) into `v`; asserts every one was stored.
fn ingest_synth(v: &Vault, seed: u64, n: u64, days: u32) {
    let mut s = lethe_vault::synth::Synth::new(seed, n, now(), days);
    let mut lines = Vec::new();
    let mut l = String::new();
    while s.next_line(&mut l) {
        lines.push(std::mem::take(&mut l));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(v.ingest_lines(&refs, now()).unwrap().stored, n);
}

/// `verify`'s unexplained gaps, one line each (empty: the store verifies).
#[allow(dead_code)]
pub fn gaps(v: &Vault) -> Vec<String> {
    let r = v.verify(None, None, now(), &|_| {}).unwrap();
    r.unexplained_gaps
        .iter()
        .map(|g| format!("{}/{} {}: {}", g.tenant, g.stream, g.seq, g.problem))
        .collect()
}

/// A gap as the tamper suites compare it: (tenant, stream, seq, problem).
#[allow(dead_code)]
pub type Located = (String, String, u64, String);

/// The report's unexplained gaps, located; asserts the total agrees.
#[allow(dead_code)]
pub fn located(r: lethe_vault::verify::VerifyReport) -> Vec<Located> {
    assert_eq!(r.gaps_total as usize, r.unexplained_gaps.len());
    r.unexplained_gaps
        .into_iter()
        .map(|g| (g.tenant, g.stream, g.seq, g.problem))
        .collect()
}

/// Gaps that name data key `id` (as `(keys)` gaps at it, or at records under it).
#[allow(dead_code)]
pub fn key_gaps(got: &[Located], id: i64) -> Vec<&Located> {
    got.iter()
        .filter(|g| (g.1 == "(keys)" && g.2 == id as u64) || g.3.contains(&format!("data key {id}")))
        .collect()
}

/// Asserts a deleted `key.data_created` entry `seq` (whose body was
/// `body`) is named missing, and every key it recorded named unrecorded.
#[allow(dead_code)]
pub fn assert_deleted_key_entry_caught(got: &[Located], seq: u64, body: &str) {
    assert!(
        got.iter()
            .any(|g| g.1 == "(ledger)" && g.2 == seq && g.3.contains("missing")),
        "{got:#?}"
    );
    let ids: Vec<u64> = serde_json::from_str::<Value>(body).unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert!(!ids.is_empty());
    for id in ids {
        assert!(
            got.iter()
                .any(|g| g.1 == "(keys)" && g.2 == id && g.3.contains("no ledger entry")),
            "key {id}: {got:#?}"
        );
    }
}

/// The tamper suites' policy (both backends): delete most streams after
/// 30 days, anonymize LLM requests after 7 (then
/// delete after 90): both kinds of removal, whole partitions and rows.
#[allow(dead_code)]
pub const TAMPER_POLICY: &str = r#"
[retention.default]
window = "30d"
action = "delete"

[[retention.policy]]
name = "requests-anonymize"
stream = "requests"
window = "7d"
action = "anonymize"
"#;

/// Where one test's vault lives: the embedded store in a directory of its
/// own, or a PostgreSQL schema of its own (with the key file in a
/// directory of its own) — so that one test body runs on both backends.
#[allow(dead_code)]
pub struct Place {
    dir: tempfile::TempDir,
    schema: Option<pg::Schema>,
}

#[allow(dead_code)]
impl Place {
    /// The embedded store in a fresh directory.
    pub fn sqlite() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
            schema: None,
        }
    }

    /// A fresh schema named after `name` on the test server (fails, never
    /// skips, without one).
    pub fn postgres(name: &str) -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
            schema: Some(pg::Schema::new(name)),
        }
    }

    /// The vault's directory (key file; the embedded store's files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration `extra` on this place's backend.
    pub fn cfg(&self, extra: &str) -> Config {
        match &self.schema {
            Some(s) => pg::pg_cfg(s, extra),
            None => cfg(extra),
        }
    }

    /// The vault here, opened (or created) with configuration `extra`.
    pub fn open(&self, extra: &str) -> Vault {
        open(self.dir(), self.cfg(extra))
    }

    /// The vault here, opened (or created) with configuration `c` (its
    /// `[store]` pointed at this place).
    pub fn open_with(&self, mut c: Config) -> Vault {
        if let Some(s) = &self.schema {
            c.store = pg::pg_cfg(s, "").store;
        }
        open(self.dir(), c)
    }

    /// The vault here holding `n` synthetic records over `days` days before
    /// [`NOW`] (generator seed `seed`).
    pub fn synth(&self, extra: &str, seed: u64, n: u64, days: u32) -> Vault {
        let v = self.open(extra);
        ingest_synth(&v, seed, n, days);
        v
    }
}

/// One `#[test]` per case and backend — `on_sqlite::<case>` and
/// `on_postgres::<case>` — for cases `fn(&Place)` at the test file's root.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case(&$crate::common::Place::sqlite());
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $case() {
                    let name = $crate::common::pg::case_name(stringify!($case));
                    super::$case(&$crate::common::Place::postgres(&name));
                }
            )*
        }
    };
}
