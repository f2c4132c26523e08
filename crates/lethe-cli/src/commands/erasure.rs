//! `lethe purge`: the erasure preview, confirmation and report.

use super::*;

pub(super) fn purge(vault: &Vault, a: &PurgeArgs) -> Result<u8> {
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
        exhaustive: a.exhaustive,
        reason: required(
            "--reason",
            &a.reason,
            "the authority for the erasure, kept in the receipt",
        )?
        .into(),
        ticket: required("--ticket", &a.ticket, "the request's ticket or case reference")?.into(),
        actor: actor_arg(&a.actor)?,
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

pub(super) fn print_purge_preview(p: &lethe_vault::purge::PurgePreview) {
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
