//! `lethe ingest` and `lethe logs`: records in and out.

use super::*;

pub(super) fn ingest(vault: &Vault, a: &IngestArgs) -> Result<u8> {
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

pub(super) fn logs(vault: &Vault, a: &LogsArgs) -> Result<u8> {
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
