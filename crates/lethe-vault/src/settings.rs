//! Tenant retention settings made through the API: stored in the vault,
//! versioned, entered in the ledger under the key that made them, and in
//! force from the next sweep.
//!
//! A tenant's setting overrides every `lethe.toml` rule for that tenant
//! (see [`lethe_core::policy::PolicyBook::overrides`]); tenants without
//! one keep the configuration file's rules. Removing the setting returns
//! the tenant to the file. Every sweep enters the policies it applied —
//! settings included — in the ledger (`policy.version`), so `verify` can
//! still tell that each removal was allowed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lethe_core::config::{archive_rule, Config, PolicyAction};
use lethe_core::policy::{PolicyBook, RetentionRule, Selector};
use lethe_core::record::format_ts;
use lethe_core::{TenantId, Window};
use lethe_store::Store;
use serde::{Deserialize, Serialize};

use crate::{Result, Vault, VaultError};

/// Catalog key of the settings document.
const SETTINGS: &str = "retention.settings";

/// How long records are kept and what happens then: the part a tenant's
/// setting and each of its overrides have in common.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    /// Whether the sweep removes these records.
    pub enabled: bool,
    /// How long records are kept, counted from their event time.
    pub window: Window,
    /// What happens after the window.
    pub action: PolicyAction,
    /// With `archive_then_delete`: the archive target (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_target: Option<String>,
    /// With `archive_then_delete`: how long the archived copy is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_window: Option<Window>,
}

/// One tenant's retention, as set through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSetting {
    /// The tenant-wide rule.
    #[serde(flatten)]
    pub keep: Keep,
    /// Narrower rules within the tenant: records of one stream, scope or
    /// classification (or a combination) kept differently. The most
    /// specific that matches a record governs it, as in `lethe.toml`; the
    /// tenant-wide setting governs the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<SettingOverride>,
}

/// A rule within a tenant's setting for some of its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingOverride {
    /// Only this stream (`name` for every version, or `name:version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Only this scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Only this classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<lethe_core::Classification>,
    /// How long they are kept and what happens then.
    #[serde(flatten)]
    pub keep: Keep,
}

/// A setting as stored: who made it, when, under which version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSetting {
    /// The setting.
    #[serde(flatten)]
    pub setting: TenantSetting,
    /// The settings version that made it.
    pub version: u64,
    /// Who made it (`key:<id> (<name>)`).
    pub set_by: String,
    /// When (RFC 3339).
    pub set_at: String,
    /// The ledger entry that records it.
    pub ledger_seq: u64,
}

/// Every tenant's API setting, and the version (one more per change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Bumped by every change.
    pub version: u64,
    /// Per tenant.
    pub tenants: BTreeMap<String, StoredSetting>,
}

/// Reads the stored settings (none: version 0).
pub(crate) fn read(store: &dyn Store) -> Result<Settings> {
    match store.meta(SETTINGS)? {
        None => Ok(Settings::default()),
        Some(s) => serde_json::from_str(&s).map_err(|e| VaultError::Invalid(format!("catalog {SETTINGS}: {e}"))),
    }
}

impl TenantSetting {
    /// The setting as rules — its overrides, most specific first, then the
    /// tenant-wide rule — or why it is not valid (`field: message`, the
    /// field naming the override: `overrides[1].window`).
    pub fn rules(&self, config: &Config, tenant: &TenantId) -> Result<Vec<RetentionRule>> {
        let whole = Selector {
            tenant: Some(tenant.clone()),
            ..Default::default()
        };
        let mut rules = Vec::with_capacity(self.overrides.len() + 1);
        let mut seen = std::collections::BTreeSet::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let field = |f: &str| format!("overrides[{i}].{f}");
            if o.stream.is_none() && o.scope.is_none() && o.classification.is_none() {
                return Err(VaultError::Invalid(format!(
                    "{}: an override names a stream, a scope or a classification (the tenant-wide setting covers the rest)",
                    field("stream")
                )));
            }
            if let Some(st) = &o.stream {
                let name = st.split_once(':').map_or(st.as_str(), |(n, _)| n);
                if !config.streams.iter().any(|c| c.name == name) {
                    return Err(VaultError::Invalid(format!(
                        "{}: no stream `{name}` is configured",
                        field("stream")
                    )));
                }
            }
            if !seen.insert((o.stream.clone(), o.scope.clone(), o.classification)) {
                return Err(VaultError::Invalid(format!(
                    "{}: two overrides select the same records",
                    field("stream")
                )));
            }
            let selector = Selector {
                stream: o.stream.clone(),
                scope: o.scope.clone(),
                classification: o.classification,
                ..whole.clone()
            };
            let name = format!(
                "api:{tenant}:{}/{}/{}",
                o.stream.as_deref().unwrap_or("*"),
                o.scope.as_deref().unwrap_or("*"),
                o.classification.map_or("*", |c| c.as_str())
            );
            rules.push(rule(config, name, selector, &o.keep).map_err(|e| match e {
                VaultError::Invalid(m) => VaultError::Invalid(format!("overrides[{i}].{m}")),
                other => other,
            })?);
        }
        // The sweep takes the first override that matches: most specific first.
        rules.sort_by_key(|r| std::cmp::Reverse(r.selector.specificity()));
        rules.push(rule(config, format!("api:{tenant}"), whole, &self.keep)?);
        Ok(rules)
    }
}

/// One rule of a setting, validated (`field: message` errors).
fn rule(config: &Config, name: String, selector: Selector, keep: &Keep) -> Result<RetentionRule> {
    let Keep {
        enabled,
        window,
        action,
        archive_target,
        archive_window,
    } = keep;
    let (enabled, window, action) = (*enabled, *window, *action);
    if window == Window::Span(0) {
        return Err(VaultError::Invalid("window: must be longer than zero".into()));
    }
    let archive = archive_rule(action, window, archive_target, archive_window)
        .map_err(|(field, m)| VaultError::Invalid(format!("{field}: {m}")))?;
    if let Some(a) = &archive {
        if !config.archive.effective_targets().contains_key(&a.target) {
            return Err(VaultError::Invalid(format!(
                "archive_target: no archive target `{}` is configured",
                a.target
            )));
        }
    }
    Ok(RetentionRule {
        name,
        selector,
        enabled,
        window,
        action: action.action(),
        archive,
    })
}

/// The configuration's policies with the stored tenant settings over them.
pub(crate) fn book_with(config: &Config, settings: &Settings) -> PolicyBook {
    let mut book = config.policy_book();
    for (tenant, s) in &settings.tenants {
        // Settings were validated when made; one the configuration no
        // longer allows (its archive target was removed) is skipped, and
        // the tenant is governed by the file again.
        match TenantId::new(tenant).map(|t| s.setting.rules(config, &t)) {
            Ok(Ok(rules)) => book.overrides.extend(rules),
            _ => tracing::warn!(
                tenant,
                "the tenant's retention setting no longer fits the configuration; lethe.toml applies"
            ),
        }
    }
    book
}

/// Serializes changes made by this process (read, change, write).
#[derive(Default)]
pub(crate) struct SettingsLock(Mutex<()>);

impl Vault {
    /// Every tenant's API setting.
    pub fn retention_settings(&self) -> Result<Settings> {
        read(&*self.store)
    }

    /// The policies as the next sweep will apply them: the configuration
    /// with the stored settings as they are now (another process may have
    /// changed them since this one's sweep).
    pub fn current_book(&self) -> Result<PolicyBook> {
        Ok(self.book_for(&self.retention_settings()?))
    }

    /// The configuration's policies with `settings` over them (settings
    /// read once by a caller that also shows them).
    pub fn book_for(&self, settings: &Settings) -> PolicyBook {
        book_with(&self.config, settings)
    }

    /// The book of `settings` with `tenant`'s setting replaced by
    /// `proposed` (`None`: removed): what a settings change would apply.
    pub fn book_with_setting(
        &self,
        settings: &Settings,
        tenant: &TenantId,
        proposed: Option<&TenantSetting>,
    ) -> Result<PolicyBook> {
        let mut others = settings.clone();
        others.tenants.remove(tenant.as_str());
        let mut book = book_with(&self.config, &others);
        if let Some(p) = proposed {
            book.overrides.extend(p.rules(&self.config, tenant)?);
        }
        Ok(book)
    }

    /// Sets (or, `None`, removes) `tenant`'s retention setting on `actor`'s
    /// authority: validated, entered in the ledger as `retention.settings`
    /// with the previous setting, stored under a new version. It is in
    /// force from the next sweep. Returns the new settings.
    pub fn set_retention(
        &self,
        tenant: &TenantId,
        setting: Option<TenantSetting>,
        actor: &str,
        now_us: i64,
    ) -> Result<Settings> {
        if let Some(s) = &setting {
            s.rules(&self.config, tenant)?;
        }
        let _one = self.settings_lock.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut settings = self.retention_settings()?;
        let previous = settings.tenants.get(tenant.as_str()).cloned();
        let version = settings.version + 1;
        let entry = self.record(
            now_us,
            actor,
            "retention.settings",
            Some(tenant.as_str()),
            &serde_json::json!({
                "version": version,
                "setting": setting,
                "previous": previous.as_ref().map(|p| &p.setting),
                "previous_version": previous.as_ref().map(|p| p.version),
                "in_force_from": "the next sweep",
            }),
        )?;
        settings.version = version;
        match setting {
            Some(s) => {
                settings.tenants.insert(
                    tenant.to_string(),
                    StoredSetting {
                        setting: s,
                        version,
                        set_by: actor.to_string(),
                        set_at: format_ts(now_us),
                        ledger_seq: entry.seq,
                    },
                );
            }
            None => {
                settings.tenants.remove(tenant.as_str());
            }
        }
        let text = serde_json::to_string(&settings).expect("settings serialize");
        self.store.set_meta(SETTINGS, Some(&text))?;
        Ok(settings)
    }

    /// Replaces the policies in force with the configuration and the
    /// stored settings. Only a sweep calls this, holding the job lock, so
    /// that no sweep runs under a book that changes beneath it.
    pub(crate) fn refresh_book(&self) -> Result<Arc<PolicyBook>> {
        let book = Arc::new(self.current_book()?);
        *self.book.write().unwrap_or_else(|p| p.into_inner()) = book.clone();
        Ok(book)
    }
}

impl Vault {
    /// What a sweep of `tenant` at `now_us` would remove under `book` (a
    /// proposed setting's, see [`Vault::book_with_setting`]): the exact
    /// plan, per stream, scope and classification, changing nothing.
    pub fn preview_under(
        &self,
        book: &PolicyBook,
        tenant: &TenantId,
        now_us: i64,
    ) -> Result<crate::sweep::SweepReport> {
        let targets = self.retention_targets_in(book, now_us, Some(tenant))?;
        let holds: Vec<_> = self.active_holds(now_us)?.into_iter().map(|(_, h)| h).collect();
        let plan = self.store.plan_removal(&targets, &holds)?;
        Ok(crate::sweep::summarize(
            book,
            &plan.effects,
            true,
            0,
            now_us,
            now_us,
            now_us,
        ))
    }
}
