//! One function per command: set up from the arguments, call the vault, print.

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
    LedgerArgs, LogsArgs, ProofCommand, PurgeArgs, ReceiptsArgs, ReceiptsCommand, StatsArgs, VerifyArgs,
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
    }
}

fn required<'a>(flag: &str, v: &'a Option<String>, what: &str) -> Result<&'a str> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(UsageProblem(format!("{flag} is required: {what}")).into()),
    }
}

fn purge(vault: &Vault, a: &PurgeArgs) -> Result<u8> {
    use lethe_vault::purge::PurgeRequest;
    let mut subjects = a.subjects.clone();
    if let Some(f) = &a.subjects_file {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading subjects from standard input")?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        subjects.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
    }
    let stream = a
        .stream
        .as_deref()
        .map(|s| s.parse::<lethe_core::StreamId>())
        .transpose()
        .map_err(|e| UsageProblem(format!("--stream: {e}")))?;
    let req = PurgeRequest {
        tenant: tenant_arg(&a.tenant)?,
        subjects,
        stream,
        scope: a.scope.clone(),
        since_us: time_arg("--since", &a.since)?,
        until_us: time_arg("--until", &a.until)?,
        anonymize: a.anonymize,
        skip_held: a.skip_held,
        reason: required(
            "--reason",
            &a.reason,
            "the authority for the erasure, kept in the receipt",
        )?
        .into(),
        ticket: required("--ticket", &a.ticket, "the request's ticket or case reference")?.into(),
        actor: a.actor.clone().unwrap_or_else(default_actor),
    };
    let plan = vault
        .plan_purge(&req, now_us())
        .map_err(|e| vault_error(e, "planning the purge"))?;
    let p = &plan.preview;
    if !a.json {
        print_purge_preview(p);
    }
    if a.dry_run {
        if a.json {
            // The same flat shape as a real run's report.
            let mut o = serde_json::to_value(p).expect("preview serializes");
            let m = o.as_object_mut().expect("an object");
            m.insert("status".into(), "dry_run".into());
            m.insert("removed".into(), 0.into());
            m.insert("verified".into(), serde_json::Value::Null);
            m.insert("receipt_id".into(), serde_json::Value::Null);
            output::print_json(&o);
        } else {
            outln!("dry run: nothing was changed");
        }
        return Ok(exit::OK);
    }
    if p.held > 0 && !a.skip_held {
        return Err(Refusal(format!(
            "{} selected record(s) are under legal hold; release the hold or pass --skip-held to purge the rest",
            p.held
        ))
        .into());
    }
    if !a.yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            return Err(UsageProblem(
                "refusing to purge without confirmation: standard input is not a terminal; pass --yes".into(),
            )
            .into());
        }
        out!(
            "Erase {} record(s) of tenant {} and destroy {} key(s)? This cannot be undone. Type `yes` to go on: ",
            p.selected,
            p.tenant,
            p.keys_to_destroy
        );
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the confirmation")?;
        if answer.trim() != "yes" {
            outln!("not confirmed: nothing was changed");
            return Ok(exit::USAGE);
        }
    }
    let report = vault
        .execute_purge(&req, plan, &now_us)
        .map_err(|e| vault_error(e, "purge failed"))?;
    let code = if report.verified { exit::OK } else { exit::INTEGRITY };
    if a.json {
        output::print_json(&report);
        return Ok(code);
    }
    for r in &report.recovered {
        outln!("finished an interrupted purge first: receipt {r}");
    }
    match report.status.as_str() {
        "no_match" => {
            outln!("no records matched: nothing was removed, no key destroyed, no receipt written");
            if report.restored_removed > 0 {
                outln!("(removed {} restored copies)", report.restored_removed);
            }
            if let Some(e) = report.no_match_entry {
                outln!("the request is on record as ledger entry {e} (purge.no_match)");
            }
        }
        "already_done" => outln!(
            "this purge (same ticket and selection) already completed: receipt {}",
            report.receipt_id.map_or("?".into(), |r| r.to_string())
        ),
        _ => {
            outln!(
                "removed {} record(s), destroyed {} key(s); skipped {} held",
                report.removed,
                report.keys_destroyed,
                report.preview.held
            );
            outln!(
                "verification: {} — {}",
                if report.verified { "passed" } else { "FAILED" },
                report.verification
            );
            if let Some(r) = report.receipt_id {
                outln!("receipt {r} (`lethe receipts show {r}`)");
            }
            for w in &report.warnings {
                outln!("warning: {w}");
            }
            if let Some(salt) = &report.subject_salt {
                outln!(
                    "subject commitment salt {salt} — keep it with the ticket: it shows later which subjects the receipt covers"
                );
            }
        }
    }
    Ok(code)
}

fn print_purge_preview(p: &lethe_vault::purge::PurgePreview) {
    outln!(
        "purge preview: tenant {}, action {}, {} subject(s) named, {} found",
        p.tenant,
        p.action,
        p.subjects,
        p.subjects_found
    );
    let mut t = Table::new(&["stream", "scope", "records", "held", "bytes", "oldest", "newest"]);
    for g in &p.groups {
        t.row(vec![
            g.stream.clone(),
            g.scope.clone(),
            g.records.to_string(),
            g.held.to_string(),
            bytes(g.bytes),
            g.oldest.clone().unwrap_or_default(),
            g.newest.clone().unwrap_or_default(),
        ]);
    }
    t.print();
    outln!(
        "total: {} record(s), {} held, {}{}",
        p.selected,
        p.held,
        bytes(p.bytes),
        match (&p.oldest, &p.newest) {
            (Some(a), Some(b)) => format!(", event times {a} to {b}"),
            _ => String::new(),
        }
    );
    if !p.held_by.is_empty() {
        outln!(
            "held by hold(s) {}",
            p.held_by.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    outln!("keys ({}): {}", p.keys_to_destroy, p.keys);
}

fn hold(vault: &Vault, h: &HoldCommand) -> Result<u8> {
    match h {
        HoldCommand::Add(a) => hold_add(vault, a),
        HoldCommand::Ls { tenant, json } => {
            let tenant = tenant.as_deref().map(tenant_arg).transpose()?;
            let all = vault.holds(tenant.as_ref(), now_us()).context("reading holds")?;
            if *json {
                output::print_ok(&all);
                return Ok(exit::OK);
            }
            let mut t = Table::new(&[
                "id", "status", "tenant", "covers", "reason", "set", "by", "expires", "released",
            ]);
            for h in &all {
                let mut covers = Vec::new();
                if h.subject {
                    covers.push("one subject".to_string());
                }
                if let Some(s) = &h.scope {
                    covers.push(format!("scope {s}"));
                }
                if h.since.is_some() || h.until.is_some() {
                    covers.push(format!(
                        "{} – {}",
                        h.since.as_deref().unwrap_or("…"),
                        h.until.as_deref().unwrap_or("…")
                    ));
                }
                if covers.is_empty() {
                    covers.push("whole tenant".into());
                }
                t.row(vec![
                    h.id.to_string(),
                    h.status.clone(),
                    h.tenant.clone(),
                    covers.join(", "),
                    h.reason.clone(),
                    h.created.clone(),
                    h.actor.clone(),
                    h.expires.clone().unwrap_or_default(),
                    h.released.clone().unwrap_or_default(),
                ]);
            }
            t.print();
            Ok(exit::OK)
        }
        HoldCommand::Release {
            id,
            reason,
            actor,
            json,
        } => {
            let reason = required("--reason", reason, "why the hold ends, kept in the ledger")?;
            let actor = actor.clone().unwrap_or_else(default_actor);
            let v = vault
                .release_hold(*id, reason, &actor, now_us())
                .map_err(|e| vault_error(e, "releasing the hold"))?;
            if *json {
                output::print_ok(&v);
            } else {
                outln!("hold {} released (ledger entry recorded)", v.id);
            }
            Ok(exit::OK)
        }
    }
}

fn hold_add(vault: &Vault, a: &HoldAddArgs) -> Result<u8> {
    use lethe_vault::hold::HoldRequest;
    let now = now_us();
    let expires_us = match &a.expires {
        None => None,
        Some(v) => Some(match parse_ts(v) {
            Some(t) => t,
            None => match v.parse::<lethe_core::Window>() {
                Ok(w @ lethe_core::Window::Span(_)) => {
                    // Beyond year 9999 a time cannot be written down.
                    const LAST_US: i64 = 253_402_300_799_000_000;
                    match w.micros().and_then(|m| now.checked_add(m)).filter(|t| *t <= LAST_US) {
                        Some(t) => t,
                        None => {
                            return Err(UsageProblem(format!(
                                "--expires: `{v}` from now is after the year 9999; omit --expires for a hold without expiry"
                            ))
                            .into())
                        }
                    }
                }
                Ok(lethe_core::Window::Forever) => {
                    return Err(
                        UsageProblem("--expires: omit it for a hold that lasts until it is released".into()).into(),
                    )
                }
                Err(e) => {
                    return Err(UsageProblem(format!(
                        "--expires: `{v}` is neither an RFC 3339 time nor a duration: {e}"
                    ))
                    .into())
                }
            },
        }),
    };
    let req = HoldRequest {
        tenant: tenant_arg(&a.tenant)?,
        subject: a.subject.clone(),
        scope: a.scope.clone(),
        since_us: time_arg("--since", &a.since)?,
        until_us: time_arg("--until", &a.until)?,
        reason: required("--reason", &a.reason, "why the records must be kept (e.g. the matter)")?.into(),
        expires_us,
        actor: a.actor.clone().unwrap_or_else(default_actor),
    };
    let set = vault
        .add_hold(&req, now)
        .map_err(|e| vault_error(e, "setting the hold"))?;
    if a.json {
        output::print_ok(&set);
    } else {
        outln!(
            "hold {} set on tenant {} (ledger entry {})",
            set.hold.id,
            set.hold.tenant,
            set.hold.ledger_seq.map_or("?".into(), |s| s.to_string())
        );
        if let Some(salt) = &set.subject_salt {
            outln!("subject commitment salt {salt} — keep it with the matter");
        }
    }
    Ok(exit::OK)
}

fn verify(vault: &Vault, a: &VerifyArgs) -> Result<u8> {
    let tenant = a.tenant.as_deref().map(tenant_arg).transpose()?;
    if let Some(s) = &a.stream {
        s.parse::<lethe_core::StreamId>()
            .map_err(|e| UsageProblem(format!("--stream: {e}")))?;
    }
    let pb = output::progress(a.json, "verifying");
    if !pb.is_hidden() {
        // Stored rows to check: live, anonymized and tombstones.
        let st = vault.stats(tenant.as_ref())?;
        pb.set_length(st.rows.iter().map(|r| r.records + r.tombstones).sum());
    }
    let mut heads = Vec::new();
    if a.witness {
        heads.extend(
            vault
                .witnessed_heads()
                .map_err(|e| vault_error(e, "reading the witnesses"))?,
        );
    }
    for f in &a.witness_file {
        heads.extend(lethe_vault::witness::read_heads(f).map_err(|e| vault_error(e, "reading a witness file"))?);
    }
    if (a.witness || !a.witness_file.is_empty()) && heads.is_empty() {
        return Err(UsageProblem("--witness: the witnesses hold no published head yet".into()).into());
    }
    let r = vault
        .verify_against(tenant.as_ref(), a.stream.as_deref(), now_us(), &heads, &|n| {
            pb.set_position(n)
        })
        .context("verifying")?;
    pb.finish_and_clear();
    let code = if r.ok() { exit::OK } else { exit::INTEGRITY };
    if a.json {
        output::print_json(&r);
        return Ok(code);
    }
    outln!(
        "{} records checked ({} anonymized, {} tombstones), {} removed records explained by receipts",
        r.records_checked,
        r.anonymized,
        r.tombstones,
        r.removed_explained
    );
    outln!(
        "{} chains, {} checkpoints recomputed ({} inside removed ranges), {} ledger entries",
        r.chains,
        r.checkpoints_checked,
        r.checkpoints_unverifiable,
        r.ledger_entries
    );
    if r.unsealed_recent > 0 {
        outln!(
            "{} recent records are not under a checkpoint yet (an ingest is running; the next seal covers them)",
            r.unsealed_recent
        );
    }
    outln!("checkpoint public key {}", r.public_key);
    if r.ok() {
        outln!("verified: no unexplained gaps");
    } else {
        outln!("UNEXPLAINED GAPS: {}", r.gaps_total);
        let mut t = Table::new(&["tenant", "stream", "seq", "problem"]);
        for g in &r.unexplained_gaps {
            t.row(vec![
                g.tenant.clone(),
                g.stream.clone(),
                g.seq.to_string(),
                g.problem.clone(),
            ]);
        }
        t.print();
    }
    Ok(code)
}

fn proof(vault: &Vault, p: &ProofCommand) -> Result<u8> {
    match p {
        ProofCommand::Inclusion { record, size } => {
            let id = uuid::Uuid::parse_str(record).map_err(|e| UsageProblem(format!("--record: {e}")))?;
            let proof = vault.inclusion_proof(id.as_bytes(), *size)?;
            output::print_json(&proof);
        }
        ProofCommand::Consistency {
            tenant,
            stream,
            from,
            to,
        } => {
            let proof = vault.consistency_proof(tenant, stream, *from, *to)?;
            output::print_json(&proof);
        }
        ProofCommand::PublicKey => outln!("{}", vault.public_key()),
        ProofCommand::Check { .. } => unreachable!("handled before the vault opens"),
    }
    Ok(exit::OK)
}

fn proof_check(file: &str, public_key: Option<&str>, json: bool) -> Result<u8> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let proof: lethe_vault::proof::Proof =
        serde_json::from_str(&text).map_err(|e| UsageProblem(format!("{file}: not a Lethe proof: {e}")))?;
    let r = lethe_vault::proof::check(&proof, public_key).map_err(|e| UsageProblem(format!("{file}: {e}")))?;
    if json {
        output::print_json(&r);
    } else {
        for (what, ok) in &r.checks {
            outln!("{} {what}", if *ok { "ok  " } else { "FAIL" });
        }
        if !r.key_pinned {
            outln!("note: checked with the public key inside the file; pin the vault's key with --public-key");
        }
        outln!(
            "{}",
            if r.valid {
                "proof is valid"
            } else {
                "PROOF IS NOT VALID"
            }
        );
    }
    Ok(if r.valid { exit::OK } else { exit::INTEGRITY })
}

/// The commented sample configuration shipped at the repository root.
const SAMPLE_CONFIG: &str = include_str!("../../../lethe.toml");

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

fn ingest(vault: &Vault, a: &IngestArgs) -> Result<u8> {
    let pb = output::progress(a.json, "ingest");
    let tick = |n: u64, _| pb.set_position(n);
    let report = if a.input == "-" {
        vault.ingest(BufReader::with_capacity(1 << 20, std::io::stdin()), &now_us, &tick)
    } else {
        let f = std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input))?;
        vault.ingest(BufReader::with_capacity(1 << 20, f), &now_us, &tick)
    }
    .context("ingest stopped (every batch before the failure is stored)")?;
    pb.finish_and_clear();
    if a.json {
        output::print_ok(&report);
    } else {
        for r in &report.errors {
            eprintln!("line {}: field `{}`: {}", r.line, r.field, r.message);
        }
        if report.rejected as usize > report.errors.len() {
            eprintln!(
                "… and {} more rejected lines",
                report.rejected as usize - report.errors.len()
            );
        }
        outln!(
            "{} lines: {} stored, {} duplicates (already stored), {} not captured (capture mode none), {} rejected",
            report.lines,
            report.stored,
            report.duplicates,
            report.not_captured,
            report.rejected
        );
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(if report.rejected > 0 { exit::PARTIAL } else { exit::OK })
}

fn logs(vault: &Vault, a: &LogsArgs) -> Result<u8> {
    let stream = match &a.stream {
        None => None,
        Some(s) if s.contains(':') => Some(s.parse().map_err(|e| UsageProblem(format!("--stream: {e}")))?),
        Some(name) => Some(
            vault
                .config()
                .schemas()
                .into_iter()
                .filter(|x| &x.id.name == name)
                .map(|x| x.id)
                .max_by_key(|x| x.version)
                .ok_or_else(|| UsageProblem(format!("--stream: no declared stream `{name}`")))?,
        ),
    };
    let q = LogQuery {
        tenant: tenant_arg(&a.tenant)?,
        stream,
        scope: a.scope.clone(),
        subject: a.subject.clone(),
        since_us: time_arg("--since", &a.since)?,
        until_us: time_arg("--until", &a.until)?,
        limit: a.limit,
        ascending: a.asc,
        restored: a.restored,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write;
    let mut io_err = None;
    let read = vault.logs(&q, now_us(), &mut |v| {
        let r = if a.json {
            serde_json::to_writer(&mut out, &v)
                .map_err(std::io::Error::from)
                .and_then(|_| writeln!(out))
        } else {
            let subject = v.get("subject").and_then(|s| s.as_str()).unwrap_or("-");
            let mut flags = String::new();
            if v.get("anonymized").is_some() {
                flags.push_str(" [anonymized]");
            }
            if v.get("erased").is_some() {
                flags.push_str(" [erased]");
            }
            writeln!(
                out,
                "{}  {}  {}  {}  {}{}  {}",
                v["ts"].as_str().unwrap_or(""),
                v["stream"].as_str().unwrap_or(""),
                v["scope"].as_str().unwrap_or(""),
                v["classification"].as_str().unwrap_or(""),
                subject,
                flags,
                v["fields"]
            )
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                io_err = Some(e);
                false
            }
        }
    })?;
    let _ = out.flush();
    drop(out);
    // Records the read met but could not show are named, never silently dropped.
    for u in &read.unreadable {
        eprintln!(
            "record {} ({} seq {}) could not be read and was skipped: {}",
            u.id, u.stream, u.seq, u.problem
        );
    }
    if read.unreadable_total > read.unreadable.len() as u64 {
        eprintln!(
            "… and {} more unreadable records",
            read.unreadable_total - read.unreadable.len() as u64
        );
    }
    let code = if read.unreadable_total > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    };
    match io_err {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        Some(e) => Err(e).context("writing output"),
        None => Ok(code),
    }
}

fn cleanup(vault: &Vault, a: &CleanupArgs) -> Result<u8> {
    let now = time_arg("--now", &a.now)?.unwrap_or_else(now_us);
    let tenant = a.tenant.as_deref().map(tenant_arg).transpose()?;
    let pb = output::progress(a.json, if a.dry_run { "planning" } else { "cleanup" });
    let tick = |done: u64, total: u64| {
        pb.set_length(total);
        pb.set_position(done);
    };
    let actor = a.actor.clone().unwrap_or_else(default_actor);
    let report = vault
        .sweep_by(&actor, now, tenant.as_ref(), a.dry_run, &now_us, &tick)
        .map_err(|e| vault_error(e, "cleanup failed"))?;
    pb.finish_and_clear();
    if a.json {
        output::print_ok(&report);
    } else {
        print_sweep(&report);
    }
    // Some rules could not archive (and so kept their records): the run
    // did what it could, but is not a success.
    Ok(if report.failing.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

pub(crate) fn default_actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

fn ledger(vault: &Vault, a: &LedgerArgs) -> Result<u8> {
    if a.verify {
        let check = vault.verify_ledger().context("reading the ledger")?;
        let code = if check.problem.is_some() {
            exit::INTEGRITY
        } else {
            exit::OK
        };
        if a.json {
            output::print_ok(&check);
        } else {
            match &check.problem {
                None => outln!("ledger verifies: {} entries, head {}", check.entries, check.head),
                Some(b) => outln!(
                    "LEDGER DOES NOT VERIFY: {b} ({} entries verified before it)",
                    check.entries
                ),
            }
        }
        return Ok(code);
    }
    let from = match &a.since {
        None => 1,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let t = time_arg("--since", &a.since)?.expect("given");
                // Entries are in time order: find the first at or after t.
                let mut from = 1;
                loop {
                    let page = vault.ledger(from, 10_000)?;
                    match page.iter().find(|e| e.ts_us >= t) {
                        Some(e) => break e.seq,
                        None if page.len() < 10_000 => break u64::MAX,
                        None => from = page.last().expect("non-empty").seq + 1,
                    }
                }
            }
        },
    };
    let entries = if from == u64::MAX {
        Vec::new()
    } else {
        vault.ledger(from, a.limit)?
    };
    if a.json {
        output::print_ok(&entries);
    } else {
        let mut t = Table::new(&["seq", "time", "actor", "kind", "tenant", "details"]);
        for e in &entries {
            let body = if e.body.len() > 80 {
                format!("{}…", &e.body[..e.body.floor_char_boundary(80)])
            } else {
                e.body.clone()
            };
            t.row(vec![
                e.seq.to_string(),
                lethe_core::record::format_ts(e.ts_us),
                e.actor.clone(),
                e.kind.clone(),
                e.tenant.clone().unwrap_or_else(|| "-".into()),
                body,
            ]);
        }
        t.print();
    }
    Ok(exit::OK)
}

fn receipts(vault: &Vault, a: &ReceiptsArgs) -> Result<u8> {
    match &a.show {
        Some(ReceiptsCommand::Show { id }) => {
            let r = vault
                .receipt(*id)
                .context("reading receipts")?
                .ok_or_else(|| UsageProblem(format!("no receipt {id} (see `lethe receipts`)")))?;
            let body: serde_json::Value =
                serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body.clone()));
            if a.json {
                // The receipt as one object: its body is JSON, not a string of it.
                output::print_ok(&serde_json::json!({
                    "seq": r.seq,
                    "time": lethe_core::record::format_ts(r.ts_us),
                    "actor": r.actor,
                    "kind": r.kind,
                    "tenant": r.tenant,
                    "body": body,
                    "prev": to_hex(&r.prev),
                    "hash": to_hex(&r.hash),
                    "mac": to_hex(&r.mac),
                }));
            } else {
                outln!(
                    "receipt {} ({}) at {} by {}",
                    r.seq,
                    r.kind,
                    lethe_core::record::format_ts(r.ts_us),
                    r.actor
                );
                outln!("hash {}  mac {}", to_hex(&r.hash), to_hex(&r.mac));
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&body).expect("JSON values serialize")
                );
            }
        }
        None => {
            let all = vault.receipts().context("reading receipts")?;
            if a.json {
                output::print_ok(&all);
            } else {
                let mut t = Table::new(&["id", "time", "actor", "kind", "tenant", "what", "verified"]);
                for r in &all {
                    let b: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                    t.row(vec![
                        r.seq.to_string(),
                        lethe_core::record::format_ts(r.ts_us),
                        r.actor.clone(),
                        r.kind.clone(),
                        r.tenant.clone().unwrap_or_else(|| "-".into()),
                        receipt_summary(&r.kind, &b),
                        b["verified"].as_bool().map_or("-".into(), |v| v.to_string()),
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(exit::OK)
}

/// One line saying what a receipt covers (its details: `receipts show ID`).
fn receipt_summary(kind: &str, b: &serde_json::Value) -> String {
    let n = |k: &str| b[k].as_u64().unwrap_or(0);
    match kind {
        "receipt.sweep" if b["recovered"].as_bool() == Some(true) => {
            format!("finished the interrupted sweep of intent {}", b["intent"])
        }
        "receipt.sweep" => format!("deleted {}, anonymized {}", n("deleted"), n("anonymized")),
        "receipt.purge" => format!(
            "erased {} record(s), destroyed {} key(s)",
            n("removed"),
            n("keys_destroyed")
        ),
        "receipt.archive_expiry" => format!(
            "deleted {} archived object(s), {} record(s)",
            n("objects"),
            n("records")
        ),
        _ => String::new(),
    }
}

fn print_sweep(r: &SweepReport) {
    let verb = if r.status == "dry_run" { "would" } else { "did" };
    outln!(
        "cleanup ({}) at {}: {verb} delete {} and anonymize {} records, freeing {}",
        r.status,
        r.now,
        r.deleted,
        r.anonymized,
        bytes(r.bytes_freed)
    );
    if r.held > 0 {
        outln!("{} expired records kept by legal holds (`lethe hold ls`)", r.held);
    }
    if let Some(a) = &r.archived {
        outln!(
            "archived {} records to {} objects first ({} of NDJSON stored as {}, read back and checked) in {:.1} s",
            a.records,
            a.objects,
            bytes(a.raw_bytes),
            bytes(a.bytes),
            a.millis as f64 / 1000.0
        );
    }
    for f in &r.failing {
        outln!(
            "FAILING: policy `{}` could not archive to `{}` — its records stay until a run succeeds: {}",
            f.rule,
            f.target,
            f.error
        );
    }
    if let Some(x) = &r.archive_expiry {
        if x.objects > 0 || x.held > 0 {
            outln!(
                "archive clock: {verb} delete {} archived objects ({} records, {}) past their archive window{}",
                x.objects,
                x.records,
                bytes(x.bytes),
                if x.held > 0 {
                    format!("; {} kept by legal holds", x.held)
                } else {
                    String::new()
                }
            );
        }
    }
    for x in &r.restorations_expired {
        outln!(
            "restorations: {verb} remove restoration {} of {} ({} restored records, {}) — its window ended {}",
            x.id,
            x.tenant,
            x.records,
            bytes(x.bytes),
            x.expired
        );
    }
    for w in &r.warnings {
        outln!("warning: {w}");
    }
    if r.groups.is_empty() {
        outln!("nothing to do");
        return;
    }
    let mut t = Table::new(&[
        "tenant",
        "stream",
        "scope",
        "class",
        "rule",
        "action",
        "window",
        "records",
        "held",
        "partitions",
        "freed",
    ]);
    for g in &r.groups {
        t.row(vec![
            g.tenant.clone(),
            g.stream.clone(),
            g.scope.clone(),
            g.classification.clone(),
            g.rule.clone(),
            g.action.clone(),
            g.window.clone(),
            g.records.to_string(),
            g.held.to_string(),
            g.partitions_dropped.to_string(),
            bytes(g.bytes_freed),
        ]);
    }
    t.print();
}

fn stats(vault: &Vault, a: &StatsArgs) -> Result<u8> {
    let tenant = a.tenant.as_deref().map(tenant_arg).transpose()?;
    let report = vault.stats(tenant.as_ref()).context("reading stats")?;
    if a.json {
        output::print_ok(&report);
    } else {
        print_stats(&report);
    }
    Ok(exit::OK)
}

fn print_stats(r: &StatsReport) {
    let mut t = Table::new(&[
        "tenant",
        "stream",
        "scope",
        "records",
        "anonymized",
        "tombstones",
        "bytes",
        "oldest",
        "newest",
        "partitions",
        "not captured",
    ]);
    let day = |s: &Option<String>| {
        s.as_deref()
            .map(|s| s[..10.min(s.len())].to_string())
            .unwrap_or_else(|| "-".into())
    };
    for row in &r.rows {
        t.row(vec![
            row.tenant.clone(),
            row.stream.clone(),
            row.scope.clone(),
            row.records.to_string(),
            row.anonymized.to_string(),
            row.tombstones.to_string(),
            bytes(row.bytes),
            day(&row.oldest),
            day(&row.newest),
            row.partitions.to_string(),
            row.not_captured.to_string(),
        ]);
    }
    t.print();
    outln!(
        "total: {} records, {} on disk, {} not captured",
        r.totals.records,
        bytes(r.totals.bytes),
        r.totals.not_captured
    );
}

fn demo(vault: &Vault, a: &DemoArgs) -> Result<u8> {
    let now = now_us();
    let pb = output::progress(a.json, "writing demo data");
    pb.set_length(a.records);
    let synth = Synth::new(a.seed, a.records, now, 365);
    let started = std::time::Instant::now();
    let input = BufReader::with_capacity(1 << 20, SynthReader::new(synth));
    let ingested = vault
        .ingest(input, &now_us, &|n, _| pb.set_position(n))
        .context("writing demo data")?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let before = vault.stats(None)?;
    let plan = vault.sweep(now, None, true, &now_us, &|_, _| {})?;
    let pb = output::progress(a.json, "cleanup");
    let run = vault.sweep(now, None, false, &now_us, &|d, t| {
        pb.set_length(t);
        pb.set_position(d);
    })?;
    pb.finish_and_clear();
    let after = vault.stats(None)?;
    let verified = vault.verify(None, None, now_us(), &|_| {}).context("verifying")?;
    if a.json {
        output::print_ok(&serde_json::json!({
            "ingest": ingested, "stats_before": before, "dry_run": plan, "cleanup": run, "stats_after": after,
            "verify": verified,
        }));
        return Ok(exit::OK);
    }
    outln!(
        "== wrote {} demo records in {:.1} s ({:.0}/s): {} stored, {} counted but not captured (capture mode none)\n",
        ingested.lines,
        secs,
        ingested.lines as f64 / secs.max(1e-9),
        ingested.stored,
        ingested.not_captured
    );
    outln!("== stats before cleanup");
    print_stats(&before);
    outln!("\n== cleanup --dry-run");
    print_sweep(&plan);
    outln!("\n== cleanup");
    print_sweep(&run);
    outln!("\n== stats after cleanup");
    print_stats(&after);
    outln!(
        "\nthe plan matched the run: {} (deleted {} / {}, anonymized {} / {})",
        plan.same_effect(&run),
        plan.deleted,
        run.deleted,
        plan.anonymized,
        run.anonymized
    );
    if let Some(a) = &run.archived {
        let listed = vault.archive_ls(&Default::default())?;
        outln!(
            "\n== archive: {} records archived before deletion to {} objects ({} of NDJSON in {}); `lethe archive ls` lists {} objects",
            a.records,
            a.objects,
            bytes(a.raw_bytes),
            bytes(a.bytes),
            listed.len()
        );
    }
    outln!(
        "\n== verify: {} stored records intact, {} removed records explained by receipt {}, {} unexplained gaps",
        verified.records_checked,
        verified.removed_explained,
        run.receipt.map_or("-".to_string(), |r| r.to_string()),
        verified.gaps_total
    );
    Ok(exit::OK)
}
