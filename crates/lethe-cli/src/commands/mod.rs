//! One function per command: set up from the arguments, call the vault,
//! print. This module holds what they share: error kinds, opening the vault,
//! argument helpers; each command lives in the module of its concern.

mod erasure;
mod evidence;
mod holds;
mod records;
mod retention;
mod service;

use erasure::*;
use evidence::*;
use holds::*;
use records::*;
use retention::*;
use service::*;

use std::fmt;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use lethe_core::config::{self, Config, Source};
use lethe_core::merkle::to_hex;
use lethe_core::record::parse_ts;
use lethe_core::TenantId;
use lethe_vault::logs::LogQuery;
use lethe_vault::stats::StatsReport;
use lethe_vault::sweep::SweepReport;
use lethe_vault::synth::{Synth, SynthReader};
use lethe_vault::{MasterKeySource, Vault};

use crate::args::{
    ArchiveCommand, CleanupArgs, Cli, Command, ConfigCommand, DemoArgs, HoldAddArgs, HoldCommand, IngestArgs,
    KeysCommand, LedgerArgs, LogsArgs, ProofCommand, PurgeArgs, ReceiptsArgs, ReceiptsCommand, ServeArgs, StatsArgs,
    VerifyArgs,
};
use crate::exit;
use crate::output::{self, bytes, Table};

/// Marks an error as a configuration problem (exit code 4).
#[derive(Debug)]
pub struct ConfigProblem(pub String);

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigProblem {}

/// Marks an error as a bad argument value (exit code 2).
#[derive(Debug)]
pub struct UsageProblem(pub String);

impl fmt::Display for UsageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageProblem {}

/// Marks an error as a refusal (exit code 6): e.g. a purge of held records.
#[derive(Debug)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Maps a vault error to the CLI's error kinds: bad requests are usage
/// problems (exit 2), refusals exit 6, the rest fail with `what` as context.
pub(crate) fn vault_error(e: lethe_vault::VaultError, what: &'static str) -> anyhow::Error {
    match e {
        lethe_vault::VaultError::Invalid(m) => UsageProblem(m).into(),
        lethe_vault::VaultError::Refused(m) => Refusal(m).into(),
        other => anyhow::Error::new(other).context(what),
    }
}

impl Cli {
    /// Whether the command prints JSON (errors then print JSON too).
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::Ingest(a) => a.json,
            Command::Logs(a) => a.json,
            Command::Cleanup(a) => a.json,
            Command::Stats(a) => a.json,
            Command::Demo(a) => a.json,
            Command::Ledger(a) => a.json,
            Command::Receipts(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Purge(a) => a.json,
            Command::Hold(HoldCommand::Add(a)) => a.json,
            Command::Hold(HoldCommand::Ls { json, .. }) => *json,
            Command::Hold(HoldCommand::Release { json, .. }) => *json,
            Command::Archive(ArchiveCommand::Ls { json, .. }) => *json,
            Command::Archive(ArchiveCommand::Verify { json, .. }) => *json,
            Command::Archive(ArchiveCommand::Restore { json, .. }) => *json,
            Command::Archive(ArchiveCommand::Restorations { json, .. }) => *json,
            Command::Proof(ProofCommand::Check { json, .. }) => *json,
            Command::Proof(_) => true,
            Command::Config(_) => false,
            Command::Serve(_) => false,
            Command::Keys(KeysCommand::Create { json, .. }) => *json,
            Command::Keys(KeysCommand::Ls { json }) => *json,
            Command::Keys(KeysCommand::Revoke { json, .. }) => *json,
        }
    }
}

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Runs the parsed command and returns its exit code.
pub fn run(cli: Cli) -> Result<u8> {
    // Checking a proof needs no configuration, store or key: anyone can.
    if let Command::Proof(ProofCommand::Check { file, public_key, json }) = &cli.command {
        return proof_check(file, public_key.as_deref(), *json);
    }
    let config = load_config(&cli)?;
    match &cli.command {
        Command::Config(ConfigCommand::Show) => {
            out!("{}", config.to_toml());
            Ok(exit::OK)
        }
        Command::Ingest(a) => ingest(&open(&cli, config)?, a),
        Command::Logs(a) => logs(&open(&cli, config)?, a),
        Command::Cleanup(a) => cleanup(&open(&cli, config)?, a),
        Command::Stats(a) => stats(&open(&cli, config)?, a),
        Command::Demo(a) => demo(&open(&cli, config)?, a),
        Command::Ledger(a) => ledger(&open(&cli, config)?, a),
        Command::Receipts(a) => receipts(&open(&cli, config)?, a),
        Command::Verify(a) => verify(&open(&cli, config)?, a),
        Command::Proof(p) => proof(&open(&cli, config)?, p),
        Command::Purge(a) => purge(&open(&cli, config)?, a),
        Command::Hold(h) => hold(&open(&cli, config)?, h),
        Command::Archive(c) => crate::archive::run(&open(&cli, config)?, c),
        Command::Serve(a) => serve(open(&cli, config)?, a),
        Command::Keys(k) => keys(&open(&cli, config)?, k),
    }
}

pub(super) fn required<'a>(flag: &str, v: &'a Option<String>, what: &str) -> Result<&'a str> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(UsageProblem(format!("{flag} is required: {what}")).into()),
    }
}

/// The commented sample configuration shipped at the repository root.
pub(super) const SAMPLE_CONFIG: &str = include_str!("../../../../lethe.toml");

fn load_config(cli: &Cli) -> Result<Config> {
    let (name, text) = match &cli.config {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|e| ConfigProblem(format!("reading {}: {e}", p.display())))?,
        ),
        None if Path::new("lethe.toml").exists() => (
            "lethe.toml".to_string(),
            std::fs::read_to_string("lethe.toml").map_err(|e| ConfigProblem(format!("reading lethe.toml: {e}")))?,
        ),
        // The demo shows every feature: without a configuration file it
        // runs on the sample one (which archives audit events).
        None if matches!(cli.command, Command::Demo(_)) => (
            "the sample lethe.toml (built in)".to_string(),
            SAMPLE_CONFIG.to_string(),
        ),
        None => ("built-in defaults".to_string(), String::new()),
    };
    let env = config::env_overrides(std::env::vars());
    config::load(
        Source {
            name: &name,
            text: &text,
        },
        cli.profile.as_deref(),
        &env,
    )
    .map_err(|e| ConfigProblem(e.to_string()).into())
}

fn open(cli: &Cli, config: Config) -> Result<Vault> {
    let source = match std::env::var("LETHE_MASTER_KEY") {
        Ok(v) if !v.is_empty() => MasterKeySource::Value(v),
        _ => {
            let path = cli.data_dir.join(&config.keys.master_key_file);
            // A new key only for a new store: an existing store without its key
            // must fail loudly, not silently get a key that opens nothing.
            let create = !cli.data_dir.join("catalog.db").exists();
            MasterKeySource::File { path, create }
        }
    };
    let vault = Vault::open(&cli.data_dir, config, &source).map_err(|e| match e {
        lethe_vault::VaultError::MasterKey(m) => anyhow::Error::new(ConfigProblem(format!("master key: {m}"))),
        // Refused as it is (no usable catalog, another format): nothing was done.
        lethe_vault::VaultError::Store(lethe_store::StoreError::Corrupt(m)) => anyhow::Error::new(ConfigProblem(
            format!("cannot open the store in {}: {m}", cli.data_dir.display()),
        )),
        other => anyhow::Error::new(other).context(format!("opening the store in {}", cli.data_dir.display())),
    })?;
    if vault.created_master_key {
        if let MasterKeySource::File { path, .. } = &source {
            eprintln!(
                "created a new master key at {} (mode 0600). Back it up: without it nothing encrypted in this vault can be read.",
                path.display()
            );
        }
    }
    Ok(vault)
}

pub(crate) fn tenant_arg(s: &str) -> Result<TenantId> {
    TenantId::new(s).map_err(|e| UsageProblem(format!("--tenant: {e}")).into())
}

pub(crate) fn time_arg(flag: &str, s: &Option<String>) -> Result<Option<i64>> {
    match s {
        None => Ok(None),
        Some(v) => parse_ts(v).map(Some).ok_or_else(|| {
            UsageProblem(format!(
                "{flag}: `{v}` is not an RFC 3339 timestamp (e.g. 2026-01-31T00:00:00Z)"
            ))
            .into()
        }),
    }
}

/// The actor of an act made from the command line: `--actor` as given, or
/// `cli:$USER`. The CLI is the local super-user (whoever can run it can
/// read the data directory), so its actor is a label, not an identity —
/// but it may not pose as an API key: `key:…` is refused.
pub(crate) fn actor_arg(actor: &Option<String>) -> Result<String> {
    match actor {
        None => Ok(default_actor()),
        Some(a) if a.trim_start().starts_with("key:") => Err(UsageProblem(
            "--actor: `key:…` names an API key; acts through the API are recorded under their key, \
             and the CLI cannot sign as one"
                .into(),
        )
        .into()),
        Some(a) if a.trim().is_empty() => Err(UsageProblem("--actor: must not be empty".into()).into()),
        Some(a) => Ok(a.clone()),
    }
}

pub(crate) fn default_actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}
