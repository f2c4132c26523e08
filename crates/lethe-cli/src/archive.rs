//! `lethe archive ls | verify | restore`.

use std::io::Write;

use anyhow::Result;
use lethe_vault::archive::inventory::ArchiveFilter;
use lethe_vault::Vault;

use crate::args::{ArchiveCommand, ArchiveSelect};
use crate::commands::{now_us, tenant_arg, time_arg, vault_error, UsageProblem};
use crate::exit;
use crate::output::{self, bytes, Table};

/// Runs one `archive` subcommand.
pub fn run(vault: &Vault, c: &ArchiveCommand) -> Result<u8> {
    match c {
        ArchiveCommand::Ls { select, json } => ls(vault, &filter(select)?, *json),
        ArchiveCommand::Verify { select, json } => verify(vault, &filter(select)?, *json),
        ArchiveCommand::Restore {
            select,
            into_store: true,
            window,
            reason,
            actor,
            json,
            ..
        } => restore_into(
            vault,
            &filter(select)?,
            window.as_deref(),
            reason.as_deref(),
            actor.clone(),
            *json,
        ),
        ArchiveCommand::Restore { select, out, json, .. } => restore(vault, &filter(select)?, out.as_deref(), *json),
        ArchiveCommand::Restorations { tenant, json } => restorations(vault, tenant.as_deref(), *json),
    }
}

fn filter(s: &ArchiveSelect) -> Result<ArchiveFilter> {
    let stream = match &s.stream {
        None => None,
        Some(x) => {
            let full = if x.contains(':') { x.clone() } else { format!("{x}:1") };
            full.parse::<lethe_core::StreamId>()
                .map_err(|e| UsageProblem(format!("--stream: {e}")))?;
            Some(full)
        }
    };
    if stream.is_some() && s.tenant.is_none() {
        return Err(UsageProblem("--stream needs --tenant".into()).into());
    }
    Ok(ArchiveFilter {
        tenant: s.tenant.as_deref().map(tenant_arg).transpose()?.map(|t| t.to_string()),
        stream,
        since_us: time_arg("--since", &s.since)?,
        until_us: time_arg("--until", &s.until)?,
    })
}

fn ls(vault: &Vault, f: &ArchiveFilter, json: bool) -> Result<u8> {
    let listed = vault.archive_ls(f).map_err(|e| vault_error(e, "listing the archive"))?;
    if json {
        output::print_ok(&listed);
        return Ok(exit::OK);
    }
    if listed.is_empty() {
        outln!("no archived objects");
        return Ok(exit::OK);
    }
    let mut t = Table::new(&[
        "target", "object", "records", "oldest", "newest", "size", "raw", "receipt",
    ]);
    let (mut records, mut size) = (0u64, 0u64);
    for l in &listed {
        let m = &l.manifest;
        records += m.records;
        size += m.bytes;
        t.row(vec![
            l.target.clone(),
            m.object.clone(),
            m.records.to_string(),
            m.oldest.clone(),
            m.newest.clone(),
            bytes(m.bytes),
            bytes(m.raw_bytes),
            m.receipt.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print();
    outln!("{} objects, {records} records, {}", listed.len(), bytes(size));
    Ok(exit::OK)
}

fn verify(vault: &Vault, f: &ArchiveFilter, json: bool) -> Result<u8> {
    let pb = output::progress(json, "verifying archive");
    let c = vault
        .archive_verify(f, &|done, total| {
            pb.set_length(total);
            pb.set_position(done);
        })
        .map_err(|e| vault_error(e, "verifying the archive"))?;
    pb.finish_and_clear();
    let code = if c.problems.is_empty() {
        exit::OK
    } else {
        exit::INTEGRITY
    };
    if json {
        output::print_json(&serde_json::json!({
            "status": if c.problems.is_empty() { "ok" } else { "problems" },
            "result": c,
        }));
        return Ok(code);
    }
    outln!(
        "{} objects read back ({} records, {}) and checked against their manifests and the ledger",
        c.objects_checked,
        c.records_checked,
        bytes(c.bytes_read)
    );
    if c.ledger_trimmed > 0 {
        outln!(
            "{} manifests refer to ledger entries trimmed by ledger retention (objects still checked)",
            c.ledger_trimmed
        );
    }
    if c.problems.is_empty() {
        outln!("archive verified: every object matches its manifest and the ledger");
    } else {
        outln!("ARCHIVE PROBLEMS: {}", c.problems.len());
        let mut t = Table::new(&["target", "object", "problem"]);
        for p in &c.problems {
            t.row(vec![p.target.clone(), p.object.clone(), p.problem.clone()]);
        }
        t.print();
    }
    Ok(code)
}

fn restore(vault: &Vault, f: &ArchiveFilter, out: Option<&str>, json: bool) -> Result<u8> {
    if f.tenant.is_none() {
        return Err(UsageProblem("--tenant is required".into()).into());
    }
    let Some(out) = out else {
        return Err(UsageProblem("--out FILE (or `-` for standard output) is required".into()).into());
    };
    let report = if out == "-" {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        let r = vault
            .archive_restore(f, now_us(), &mut w)
            .map_err(|e| vault_error(e, "restoring from the archive"))?;
        w.flush()?;
        r
    } else {
        // An unnamed file until it is complete: a failed (or killed)
        // restore leaves no file of decrypted records behind.
        let file = crate::outfile::OutFile::create(std::path::Path::new(out))?;
        let mut w = std::io::BufWriter::new(file);
        let r = vault
            .archive_restore(f, now_us(), &mut w)
            .map_err(|e| vault_error(e, "restoring from the archive"))?;
        w.into_inner().map_err(|e| e.into_error())?.persist()?;
        r
    };
    for u in &report.unreadable {
        eprintln!(
            "record {} ({} seq {}) could not be read and was skipped: {}",
            u.id, u.stream, u.seq, u.problem
        );
    }
    if json {
        output::print_ok(&report);
    } else if out != "-" {
        outln!(
            "restored {} records from {} objects to {out} ({} with personal fields erased)",
            report.records,
            report.objects,
            report.erased
        );
    } else {
        eprintln!(
            "restored {} records from {} objects ({} with personal fields erased)",
            report.records, report.objects, report.erased
        );
    }
    if report.unreadable_total > 0 {
        eprintln!(
            "{} archived record(s) could not be read (named above); every other record was restored",
            report.unreadable_total
        );
        return Ok(exit::PARTIAL);
    }
    Ok(exit::OK)
}

fn restore_into(
    vault: &Vault,
    f: &ArchiveFilter,
    window: Option<&str>,
    reason: Option<&str>,
    actor: Option<String>,
    json: bool,
) -> Result<u8> {
    if f.tenant.is_none() {
        return Err(UsageProblem("--tenant is required".into()).into());
    }
    let Some(reason) = reason.filter(|r| !r.trim().is_empty()) else {
        return Err(
            UsageProblem("--reason is required with --into-store (it is recorded in the ledger)".into()).into(),
        );
    };
    let window = match window {
        None => None,
        Some(w) => Some(
            w.parse::<lethe_core::duration::Window>()
                .map_err(|e| UsageProblem(format!("--window: {e}")))?,
        ),
    };
    let actor = crate::commands::actor_arg(&actor)?;
    let set = vault
        .archive_restore_into(f, window, &actor, reason, now_us())
        .map_err(|e| vault_error(e, "restoring from the archive into the store"))?;
    if json {
        output::print_ok(&set);
        return Ok(exit::OK);
    }
    let r = &set.restoration;
    outln!(
        "restored {} records from {} objects into the store as restoration {} ({} with personal fields erased; ledger entry {})",
        set.report.records, set.report.objects, r.id, set.report.erased, r.ledger_seq
    );
    outln!(
        "they stay until {} (then the sweep removes them); read them with `lethe logs --tenant {} --restored`",
        lethe_core::record::format_ts(r.expires_us),
        r.tenant
    );
    Ok(exit::OK)
}

fn restorations(vault: &Vault, tenant: Option<&str>, json: bool) -> Result<u8> {
    let tenant = tenant.map(tenant_arg).transpose()?.map(|t| t.to_string());
    let list = vault
        .restorations(tenant.as_deref())
        .map_err(|e| vault_error(e, "listing restorations"))?;
    if json {
        output::print_ok(&list);
        return Ok(exit::OK);
    }
    if list.is_empty() {
        outln!("no restorations");
        return Ok(exit::OK);
    }
    let mut t = Table::new(&[
        "id", "tenant", "records", "size", "restored", "expires", "ledger", "what",
    ]);
    for r in &list {
        t.row(vec![
            r.id.to_string(),
            r.tenant.clone(),
            r.records.to_string(),
            bytes(r.bytes),
            lethe_core::record::format_ts(r.created_us),
            lethe_core::record::format_ts(r.expires_us),
            r.ledger_seq.to_string(),
            r.note.clone(),
        ]);
    }
    t.print();
    Ok(exit::OK)
}
