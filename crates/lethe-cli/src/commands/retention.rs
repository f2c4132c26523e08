//! `lethe cleanup`, `stats` and `demo`: the sweep and what the store holds.

use super::*;

pub(super) fn cleanup(vault: &Vault, a: &CleanupArgs) -> Result<u8> {
    let now = time_arg("--now", &a.now)?.unwrap_or_else(now_us);
    let tenant = a.tenant.as_deref().map(tenant_arg).transpose()?;
    let pb = output::progress(a.json, if a.dry_run { "planning" } else { "cleanup" });
    let tick = |done: u64, total: u64| {
        pb.set_length(total);
        pb.set_position(done);
    };
    let actor = actor_arg(&a.actor)?;
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

pub(super) fn print_sweep(r: &SweepReport) {
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

pub(super) fn stats(vault: &Vault, a: &StatsArgs) -> Result<u8> {
    let tenant = a.tenant.as_deref().map(tenant_arg).transpose()?;
    let report = vault.stats(tenant.as_ref()).context("reading stats")?;
    // What `lethe serve`'s scheduler did and will do (whole store).
    let schedule = vault.schedule_status(now_us()).context("reading the schedule")?;
    if a.json {
        let mut v = serde_json::to_value(&report).expect("stats serialize");
        v["schedule"] = serde_json::to_value(&schedule).expect("schedule serializes");
        output::print_ok(&v);
    } else {
        print_stats(&report);
        print_schedule(&schedule);
    }
    Ok(exit::OK)
}

fn print_schedule(jobs: &[lethe_vault::schedule::JobStatus]) {
    for j in jobs {
        let last = match &j.last {
            Some(l) => format!(
                "last run {} ({}{}): {}",
                l.finished_at,
                l.result,
                l.receipt.map(|r| format!(", ledger entry {r}")).unwrap_or_default(),
                l.detail
            ),
            None => "not run yet".into(),
        };
        let next = j.next_at.as_deref().unwrap_or("never");
        outln!("scheduled {} ({}): {last}; next {next}", j.job, j.schedule);
    }
}

pub(super) fn print_stats(r: &StatsReport) {
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

pub(super) fn demo(vault: &Vault, a: &DemoArgs) -> Result<u8> {
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
