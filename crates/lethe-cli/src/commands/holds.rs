//! `lethe hold add | ls | release`.

use super::*;

pub(super) fn hold(vault: &Vault, h: &HoldCommand) -> Result<u8> {
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
            let actor = actor_arg(actor)?;
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

pub(super) fn hold_add(vault: &Vault, a: &HoldAddArgs) -> Result<u8> {
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
        actor: actor_arg(&a.actor)?,
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
