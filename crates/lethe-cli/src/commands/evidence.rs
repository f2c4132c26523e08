//! The evidence commands: `verify` (with witnesses), `proof`, `ledger`, `receipts`.

use super::*;

pub(super) fn verify(vault: &Vault, a: &VerifyArgs) -> Result<u8> {
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

pub(super) fn proof(vault: &Vault, p: &ProofCommand) -> Result<u8> {
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

pub(super) fn proof_check(file: &str, public_key: Option<&str>, json: bool) -> Result<u8> {
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

pub(super) fn ledger(vault: &Vault, a: &LedgerArgs) -> Result<u8> {
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

pub(super) fn receipts(vault: &Vault, a: &ReceiptsArgs) -> Result<u8> {
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
pub(super) fn receipt_summary(kind: &str, b: &serde_json::Value) -> String {
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
