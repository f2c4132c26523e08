//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Lethe: a vault for audit and LLM request logs that forgets on schedule, provably.
#[derive(Debug, Parser)]
#[command(name = "lethe", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory of the embedded store.
    #[arg(long, global = true, env = "LETHE_DATA_DIR", default_value = "./lethe-data")]
    pub data_dir: PathBuf,
    /// Configuration file [default: ./lethe.toml if present, else built-in defaults].
    #[arg(long, global = true, env = "LETHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Named profile of the configuration file to apply.
    #[arg(long, global = true, env = "LETHE_PROFILE")]
    pub profile: Option<String>,
    /// More diagnostics on standard error: `-v` for what each step does,
    /// `-vv` for everything (tracing; also `RUST_LOG`).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Everything `-vv` shows (the flag users of `mxcp log-cleanup` know).
    #[arg(long, global = true)]
    pub debug: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store NDJSON records (one JSON object per line) from a file or stdin.
    Ingest(IngestArgs),
    /// Read records, decrypted, newest first.
    Logs(LogsArgs),
    /// Apply every enabled retention policy across all tenants (the sweep).
    Cleanup(CleanupArgs),
    /// Records, bytes, age and partitions per tenant, stream and scope.
    Stats(StatsArgs),
    /// Write a realistic year of demo data, then dry-run and run the cleanup.
    Demo(DemoArgs),
    /// The ledger of administrative acts; `--verify` checks every hash, link and MAC.
    Ledger(LedgerArgs),
    /// Receipts of sweeps and purges (ledger entries of kind `receipt.*`).
    Receipts(ReceiptsArgs),
    /// Erase records on request (right to erasure): preview, confirm,
    /// remove, destroy the subjects' keys, verify, receipt.
    Purge(PurgeArgs),
    /// Legal holds: records they cover are never deleted, anonymized or erased.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// The archive tier: list, verify and restore archived records.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Prove every record is intact and every missing one was removed by a
    /// receipted act; lists unexplained gaps (exit 5 if any).
    Verify(VerifyArgs),
    /// Merkle proofs against signed checkpoints, and checking them with the public key only.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the vault as an HTTP service (API, metrics) until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// API keys for `lethe serve`: create (prints the token once), list, revoke.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `lethe serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: `server.listen`, 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// If no working super_admin key exists, make one named `bootstrap`
    /// and print its token once on standard output.
    #[arg(long)]
    pub bootstrap_key: bool,
}

/// `lethe keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an API key and print its token (shown this once, stored nowhere).
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// `ingest`, `auditor`, `admin` or `super_admin`.
        #[arg(long)]
        role: String,
        /// A tenant the key may act on (repeatable), or `*` for all.
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        /// Lifetime (`90d`); without it the key works until revoked.
        #[arg(long)]
        expires: Option<String>,
        /// Who makes it (recorded in the ledger) [default: cli:$USER].
        #[arg(long)]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List API keys (never their secrets).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key at once.
    Revoke {
        /// Key id (the middle part of its token).
        id: String,
        /// Who revokes it (recorded in the ledger) [default: cli:$USER].
        #[arg(long)]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `lethe config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, profile, environment, defaults).
    Show,
}

/// `lethe ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Input file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: String,
    /// Input format.
    #[arg(long, default_value = "ndjson", value_parser = ["ndjson"])]
    pub format: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lethe logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Tenant to read (required: queries never span tenants).
    #[arg(long)]
    pub tenant: String,
    /// Stream, `name:version` or `name`.
    #[arg(long)]
    pub stream: Option<String>,
    /// Scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Data subject id.
    #[arg(long)]
    pub subject: Option<String>,
    /// Event time from (RFC 3339, inclusive).
    #[arg(long)]
    pub since: Option<String>,
    /// Event time until (RFC 3339, exclusive).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Oldest first.
    #[arg(long)]
    pub asc: bool,
    /// Read records restored from the archive (`archive restore
    /// --into-store`) instead of live ones; each carries `"restored": <id>`.
    #[arg(long)]
    pub restored: bool,
    /// One JSON object per line, in the format `lethe ingest` accepts.
    #[arg(long)]
    pub json: bool,
}

/// `lethe cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Print the exact plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Evaluate policies at this instant (RFC 3339) instead of now. A real
    /// run accepts only instants up to now; later ones only with --dry-run.
    #[arg(long)]
    pub now: Option<String>,
    /// Who runs it, for the receipt [default: cli:$USER].
    #[arg(long)]
    pub actor: Option<String>,
}

/// `lethe ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// First entry to list: a sequence number, or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Verify the whole ledger instead of listing it (exit 5 if it does not verify).
    #[arg(long)]
    pub verify: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lethe receipts`.
#[derive(Debug, Args)]
pub struct ReceiptsArgs {
    /// `show ID` prints one receipt in full.
    #[command(subcommand)]
    pub show: Option<ReceiptsCommand>,
    /// Print as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `lethe receipts show`.
#[derive(Debug, Subcommand)]
pub enum ReceiptsCommand {
    /// Print one receipt.
    Show {
        /// Receipt id (its ledger sequence number).
        id: u64,
    },
}

/// `lethe purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Tenant (required: a purge never spans tenants).
    #[arg(long)]
    pub tenant: String,
    /// Subject id to erase (repeatable).
    #[arg(long = "subject")]
    pub subjects: Vec<String>,
    /// File with one subject id per line (`-` for standard input).
    #[arg(long)]
    pub subjects_file: Option<PathBuf>,
    /// Only records with event time at or after this (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records with event time before this (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Only this stream (`name:version`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Why (required: the authority, recorded in the receipt).
    #[arg(long)]
    pub reason: Option<String>,
    /// Ticket or case reference (required; rerunning the same purge with it finishes or reports it).
    #[arg(long)]
    pub ticket: Option<String>,
    /// Keep the events but remove the subject linkage and personal fields.
    #[arg(long)]
    pub anonymize: bool,
    /// Purge what is not held and report what was skipped (instead of refusing).
    #[arg(long)]
    pub skip_held: bool,
    /// Search every partition in range for the subjects, not only those the
    /// subject filters name (when `verify` reports a filter that misses one).
    #[arg(long)]
    pub exhaustive: bool,
    /// Show the preview and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Print one JSON object (`selected`, `removed`, `verified`, `receipt_id`, `held`, …).
    #[arg(long)]
    pub json: bool,
    /// Who runs it, for the receipt [default: cli:$USER].
    #[arg(long)]
    pub actor: Option<String>,
}

/// `lethe hold …`.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Set a legal hold.
    Add(HoldAddArgs),
    /// List holds (active, expired and released).
    Ls {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a hold.
    Release {
        /// Hold id (see `lethe hold ls`).
        id: i64,
        /// Why (required).
        #[arg(long)]
        reason: Option<String>,
        /// Who releases it [default: cli:$USER].
        #[arg(long)]
        actor: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `lethe hold add`.
#[derive(Debug, Args)]
pub struct HoldAddArgs {
    /// Tenant.
    #[arg(long)]
    pub tenant: String,
    /// Only this subject's records.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only this scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Only records with event time at or after this (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records with event time before this (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Why (required: e.g. the litigation matter).
    #[arg(long)]
    pub reason: Option<String>,
    /// When the hold lapses by itself (RFC 3339, or a duration like `90d` from now).
    #[arg(long)]
    pub expires: Option<String>,
    /// Who sets it [default: cli:$USER].
    #[arg(long)]
    pub actor: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lethe verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this tenant's chains (the ledger is always checked whole).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this stream (`name:version`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Also hold the vault to the newest ledger head published to the
    /// configured witnesses (`[witness]` file and archive targets): a vault
    /// put back to an older copy is reported as rolled back.
    #[arg(long)]
    pub witness: bool,
    /// Hold the vault to the heads in this witness file (a copy kept
    /// elsewhere, or what a witness command published); repeatable.
    #[arg(long, value_name = "FILE")]
    pub witness_file: Vec<PathBuf>,
    /// Print one JSON object (`records_checked`, `unexplained_gaps`, …).
    #[arg(long)]
    pub json: bool,
}

/// `lethe proof …`.
#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Print (JSON) the proof that a record is in the tree of a signed checkpoint.
    Inclusion {
        /// Record id (UUID).
        #[arg(long)]
        record: String,
        /// Use the checkpoint of exactly this tree size [default: the latest covering the record].
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print (JSON) the proof that an older signed tree is a prefix of a newer one.
    Consistency {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// Stream (`name:version`).
        #[arg(long)]
        stream: String,
        /// Size of the older checkpoint.
        #[arg(long)]
        from: u64,
        /// Size of the newer checkpoint.
        #[arg(long)]
        to: u64,
    },
    /// Check a proof file with nothing but the public key (no store, no master key).
    Check {
        /// The proof (JSON), or `-` for standard input.
        file: String,
        /// The checkpoint public key to trust (hex) [default: the one in the file, which only
        /// shows the file is self-consistent].
        #[arg(long)]
        public_key: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the checkpoint public key (hex), to hand to whoever checks proofs.
    PublicKey,
}

/// `lethe stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lethe demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Records to generate.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which archived objects (`lethe archive …`).
#[derive(Debug, Args)]
pub struct ArchiveSelect {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this stream (`name:version` or `name` for version 1).
    #[arg(long)]
    pub stream: Option<String>,
    /// Records with event time at or after this (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Records with event time before this (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

/// `lethe archive …`.
#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// List archived objects (from their manifests).
    Ls {
        /// Which objects.
        #[command(flatten)]
        select: ArchiveSelect,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read every object back and check it against its manifest, and every
    /// manifest against the ledger (exit 5 on any problem).
    Verify {
        /// Which objects.
        #[command(flatten)]
        select: ArchiveSelect,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring archived records back for an investigation, decrypted (erased
    /// subjects come back marked erased): to NDJSON (`--out`) or into the
    /// store as a restoration (`--into-store`), read with `lethe logs --restored`.
    Restore {
        /// Which records (`--tenant` required).
        #[command(flatten)]
        select: ArchiveSelect,
        /// Write NDJSON to this file (`-` for standard output).
        #[arg(long, conflicts_with = "into_store")]
        out: Option<String>,
        /// Restore into the store, marked restored and never archived
        /// again, until the restoration's window ends.
        #[arg(long)]
        into_store: bool,
        /// With `--into-store`: how long the restored copies stay [default: `[archive] restore_window`, 30d].
        #[arg(long, requires = "into_store")]
        window: Option<String>,
        /// With `--into-store`: why (recorded in the ledger).
        #[arg(long, requires = "into_store")]
        reason: Option<String>,
        /// Who restores, for the ledger [default: cli:$USER].
        #[arg(long)]
        actor: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List restorations in the store (records restored with `--into-store`).
    Restorations {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}
