//! `lethe serve` and `lethe keys`: the vault as an HTTP service, and the
//! API keys that may call it.

use std::sync::Arc;

use lethe_vault::access::Role;

use super::*;

pub(super) fn serve(vault: Vault, a: &ServeArgs) -> Result<u8> {
    let mut server = vault.config().server.clone();
    if let Some(l) = &a.listen {
        server.listen = l.clone();
    }
    if a.bootstrap_key {
        bootstrap_key(&vault)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stopped = runtime.block_on(async move {
        let stop = lethe_server::shutdown_signal().context("installing signal handlers")?;
        let listener = tokio::net::TcpListener::bind(&server.listen)
            .await
            .map_err(|e| ConfigProblem(format!("server.listen: cannot listen on {}: {e}", server.listen)))?;
        let addr = listener.local_addr().context("reading the listening address")?;
        let tls = match (&server.tls_cert, &server.tls_key) {
            (Some(c), Some(k)) => Some(lethe_server::tls_config(c.as_ref(), k.as_ref()).map_err(ConfigProblem)?),
            _ => None,
        };
        let app = lethe_server::App::new(Arc::new(vault), server);
        // Listening first, so /healthz answers and /readyz says 503 while
        // interrupted work is finished.
        let recovering = app.clone();
        let app_for_schedule = app.clone();
        let recovery = tokio::task::spawn_blocking(move || recovering.recover());
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("lethe serve: listening on {scheme}://{addr}");
        let serving = match tls {
            Some(tls) => tokio::spawn(lethe_server::serve_tls(app, listener, tls, stop)),
            None => tokio::spawn(lethe_server::serve(app, listener, stop)),
        };
        recovery
            .await
            .context("start-up recovery")?
            .map_err(|e| vault_error(e, "finishing interrupted work at start-up"))?;
        // After recovery: the leader election. The leading node runs the
        // erasure jobs left open, the catch-up run of a missed occurrence
        // and the schedule (on the embedded store this node always leads).
        let scheduler = tokio::spawn(lethe_server::leader::run(app_for_schedule));
        let served = serving.await.context("the server task");
        scheduler.abort();
        served?.context("serving HTTP")?;
        Ok::<_, anyhow::Error>(())
    });
    // A scheduled sweep still running is left where it is: it is crash
    // safe, and the next start finishes it from its intent.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    stopped?;
    Ok(exit::OK)
}

/// Makes a super_admin key named `bootstrap` unless a working one exists,
/// and prints its token (standard output, once).
fn bootstrap_key(vault: &Vault) -> Result<()> {
    let now = now_us();
    let have = vault
        .api_keys()
        .context("reading API keys")?
        .iter()
        .any(|k| k.role == Role::SuperAdmin && k.live_at(now));
    if have {
        eprintln!("lethe serve: a super_admin key exists; no bootstrap key made (`lethe keys ls` lists keys)");
        return Ok(());
    }
    let made = vault
        .create_api_key(
            "bootstrap",
            Role::SuperAdmin,
            &["*".into()],
            None,
            "cli:serve --bootstrap-key",
            now,
        )
        .map_err(|e| vault_error(e, "making the bootstrap key"))?;
    eprintln!(
        "lethe serve: bootstrap super_admin key {} (shown once; revoke it once you made your own):",
        made.key.id
    );
    outln!("{}", made.token);
    Ok(())
}

pub(super) fn keys(vault: &Vault, k: &KeysCommand) -> Result<u8> {
    match k {
        KeysCommand::Create {
            name,
            role,
            tenants,
            expires,
            actor,
            json,
        } => {
            let role = Role::parse(role).map_err(|e| UsageProblem(format!("--role: {e}")))?;
            let now = now_us();
            let expires_us = match expires {
                None => None,
                Some(v) => match v.parse::<lethe_core::Window>() {
                    Ok(w @ lethe_core::Window::Span(_)) => w.micros().map(|m| now + m),
                    _ => return Err(UsageProblem(format!("--expires: `{v}` is not a duration such as 90d")).into()),
                },
            };
            let actor = actor_arg(actor)?;
            let made = vault
                .create_api_key(name, role, tenants, expires_us, &actor, now)
                .map_err(|e| vault_error(e, "making the API key"))?;
            if *json {
                output::print_ok(&serde_json::json!({"key": made.key, "token": made.token}));
            } else {
                eprintln!(
                    "API key {} ({}, {}) made; its token is shown this once:",
                    made.key.id,
                    made.key.role.as_str(),
                    tenants.join(",")
                );
                outln!("{}", made.token);
            }
            Ok(exit::OK)
        }
        KeysCommand::Ls { json } => {
            let all = vault.api_keys().context("reading API keys")?;
            if *json {
                output::print_ok(&all);
                return Ok(exit::OK);
            }
            let now = now_us();
            let when = |t: Option<i64>| t.map(lethe_core::record::format_ts).unwrap_or_default();
            let mut t = Table::new(&[
                "id",
                "name",
                "role",
                "tenants",
                "status",
                "created",
                "by",
                "expires",
                "last used",
            ]);
            for k in &all {
                let status = if k.revoked_us.is_some() {
                    "revoked"
                } else if !k.live_at(now) {
                    "expired"
                } else {
                    "active"
                };
                let tenants = match &k.tenants {
                    lethe_vault::access::TenantScope::All => "*".to_string(),
                    lethe_vault::access::TenantScope::Only(t) => t.iter().cloned().collect::<Vec<_>>().join(","),
                };
                t.row(vec![
                    k.id.clone(),
                    k.name.clone(),
                    k.role.as_str().into(),
                    tenants,
                    status.into(),
                    when(Some(k.created_us)),
                    k.creator.clone(),
                    when(k.expires_us),
                    when(k.last_used_us),
                ]);
            }
            t.print();
            Ok(exit::OK)
        }
        KeysCommand::Revoke { id, actor, json } => {
            let actor = actor_arg(actor)?;
            let k = vault
                .revoke_api_key(id, &actor, now_us())
                .map_err(|e| vault_error(e, "revoking the API key"))?;
            if *json {
                output::print_ok(&k);
            } else {
                outln!("API key {} ({}) revoked", k.id, k.name);
            }
            Ok(exit::OK)
        }
    }
}
