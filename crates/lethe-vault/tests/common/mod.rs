//! Helpers shared by the vault's integration tests.

use std::path::Path;

use lethe_core::config::{self, Config, Source};
use lethe_core::record::parse_ts;
use lethe_core::TenantId;
use lethe_vault::logs::LogQuery;
use lethe_vault::{MasterKeySource, Vault};
use serde_json::Value;

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
    let q = LogQuery {
        tenant: TenantId::new(tenant).unwrap(),
        stream: None,
        scope: None,
        subject: subject.map(String::from),
        since_us: None,
        until_us: None,
        limit: None,
        ascending: true,
    };
    let mut out = Vec::new();
    v.logs(&q, now(), &mut |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

/// Files under `dir` whose bytes contain `needle`.
#[allow(dead_code)]
pub fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}
