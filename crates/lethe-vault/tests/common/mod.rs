//! Helpers shared by the vault's integration tests.

use std::path::Path;

use lethe_core::config::{self, Config, Source};
use lethe_core::record::parse_ts;
use lethe_vault::{MasterKeySource, Vault};

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
