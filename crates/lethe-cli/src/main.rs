//! `lethe`: parse arguments, set up, call the vault, map errors to exit codes.

/// mimalloc: the ingest pipeline allocates a batch on one thread and frees it
/// on another, which glibc's allocator handles poorly.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod archive;
mod args;
mod commands;
mod output;

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
    let cli = args::Cli::parse();
    let json = cli.wants_json();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (kind, code) = if e.downcast_ref::<commands::ConfigProblem>().is_some() {
                ("config", exit::CONFIG)
            } else if e.downcast_ref::<commands::UsageProblem>().is_some() {
                ("usage", exit::USAGE)
            } else if e.downcast_ref::<commands::Refusal>().is_some() {
                ("refused", exit::REFUSED)
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
