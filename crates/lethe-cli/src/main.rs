//! `lethe`: parse arguments, set up, call the vault, map errors to exit codes.

#[macro_use]
mod output;
mod archive;
mod args;
mod commands;
mod outfile;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes (documented in docs/cli.md).
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// The operation failed (storage, I/O, crypto).
    pub const FAILED: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Partly done: some input lines were rejected; every valid one was stored.
    pub const PARTIAL: u8 = 3;
    /// Configuration or master key problem: nothing was done.
    pub const CONFIG: u8 = 4;
    /// Integrity check failed: the ledger or store does not verify, or a
    /// purge's own verification found something left.
    pub const INTEGRITY: u8 = 5;
    /// Refused: the request would remove records under legal hold.
    pub const REFUSED: u8 = 6;
}

fn main() -> ExitCode {
    lethe_server::allocator::configure();
    let cli = args::Cli::parse();
    let json = cli.wants_json();
    diagnostics(if cli.debug { 2 } else { cli.verbose });
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (kind, code) = if e.downcast_ref::<commands::ConfigProblem>().is_some() {
                ("config", exit::CONFIG)
            } else if e.downcast_ref::<commands::UsageProblem>().is_some() {
                ("usage", exit::USAGE)
            } else if e.downcast_ref::<commands::Refusal>().is_some() {
                ("refused", exit::REFUSED)
            } else if damaged(&e) {
                ("integrity", exit::INTEGRITY)
            } else {
                ("failed", exit::FAILED)
            };
            let message = format!("{e:#}");
            if json {
                output::print_json(
                    &serde_json::json!({"status": "error", "error": {"kind": kind, "message": message}}),
                );
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// Whether an error means stored data is missing or contradicts itself
/// (exit 5, like a failed verification), rather than an operation failing.
fn damaged(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<lethe_store::StoreError>(),
            Some(lethe_store::StoreError::Lost(_) | lethe_store::StoreError::Corrupt(_))
        ) || matches!(
            c.downcast_ref::<lethe_vault::VaultError>(),
            Some(lethe_vault::VaultError::Store(
                lethe_store::StoreError::Lost(_) | lethe_store::StoreError::Corrupt(_)
            ))
        )
    })
}

/// Tracing output on standard error: warnings by default, `-v` info,
/// `-vv`/`--debug` everything; `RUST_LOG` overrides.
fn diagnostics(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("lethe={level},lethe_vault={level},lethe_store={level}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
