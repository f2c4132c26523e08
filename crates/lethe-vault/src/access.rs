//! API keys: who may call the service, in which role, for which tenants —
//! made, listed and revoked here (each a ledger entry), and checked on
//! every request.
//!
//! A token is `lethe_<id>_<secret>`: the id (64 random bits, hex) finds the
//! key, the secret (256 random bits, hex) proves it. Only a keyed hash of
//! the secret is stored ([`SecretHasher`]); the token is shown once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lethe_core::crypto::SecretHasher;
use lethe_store::AccessKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{Result, Vault, VaultError};

/// What a key may do. Each role can do everything the one before can,
/// except that `ingest` reads nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Writes records to the tenants in scope; nothing else.
    Ingest,
    /// Reads stats, settings, receipts, the ledger, proofs, holds and
    /// verification results of the tenants in scope; changes nothing.
    Auditor,
    /// An auditor that also changes retention, holds, runs sweeps,
    /// erasures and restores, and reads record bodies, within scope.
    Admin,
    /// Everything, for every tenant, and API keys.
    SuperAdmin,
}

impl Role {
    /// The role's name as tokens, the CLI and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }

    /// Parses a role name; the error lists the valid ones.
    pub fn parse(s: &str) -> std::result::Result<Role, String> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            "super_admin" => Ok(Role::SuperAdmin),
            other => Err(format!(
                "unknown role `{other}`: expected ingest, auditor, admin or super_admin"
            )),
        }
    }

    /// Whether this role may read what an auditor reads.
    pub fn can_read(self) -> bool {
        self >= Role::Auditor
    }

    /// Whether this role may change settings and run destructive jobs.
    pub fn can_administer(self) -> bool {
        self >= Role::Admin
    }

    /// Whether this role may write records.
    pub fn can_ingest(self) -> bool {
        // An auditor changes nothing, records included.
        matches!(self, Role::Ingest | Role::Admin | Role::SuperAdmin)
    }
}

/// The tenants a key may act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TenantScope {
    /// Every tenant (`*`).
    All,
    /// These tenants only.
    Only(BTreeSet<String>),
}

impl TenantScope {
    /// Whether `tenant` is in scope.
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(t) => t.contains(tenant),
        }
    }

    fn from_stored(list: &[String]) -> Self {
        if list.iter().any(|t| t == "*") {
            TenantScope::All
        } else {
            TenantScope::Only(list.iter().cloned().collect())
        }
    }

    fn to_stored(&self) -> Vec<String> {
        match self {
            TenantScope::All => vec!["*".into()],
            TenantScope::Only(t) => t.iter().cloned().collect(),
        }
    }
}

/// An API key as people see it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// The public id (the token's middle part).
    pub id: String,
    /// What the key is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Which tenants it may do it to.
    pub tenants: TenantScope,
    /// Who made it.
    pub creator: String,
    /// When it was made (µs).
    pub created_us: i64,
    /// When it stops working by itself (µs).
    pub expires_us: Option<i64>,
    /// When it was last used (µs, to within a minute).
    pub last_used_us: Option<i64>,
    /// When it was revoked (µs).
    pub revoked_us: Option<i64>,
}

impl ApiKey {
    /// The actor this key is in ledger entries, receipts and intents:
    /// `key:<id> (<name>)`. The CLI refuses `--actor` values that start
    /// with `key:`, so no one can sign as a key without holding it.
    pub fn actor(&self) -> String {
        format!("key:{} ({})", self.id, self.name)
    }

    /// Whether the key works at `now_us`.
    pub fn live_at(&self, now_us: i64) -> bool {
        self.revoked_us.is_none() && self.expires_us.is_none_or(|e| e > now_us)
    }

    fn from_stored(k: &AccessKey) -> Result<ApiKey> {
        Ok(ApiKey {
            id: k.id.clone(),
            name: k.name.clone(),
            role: Role::parse(&k.role).map_err(|e| VaultError::Invalid(format!("API key {}: {e}", k.id)))?,
            tenants: TenantScope::from_stored(&k.tenants),
            creator: k.creator.clone(),
            created_us: k.created_us,
            expires_us: k.expires_us,
            last_used_us: k.last_used_us,
            revoked_us: k.revoked_us,
        })
    }
}

/// A key just made, with its token — shown once, stored nowhere.
pub struct NewApiKey {
    /// The key.
    pub key: ApiKey,
    /// The bearer token `lethe_<id>_<secret>`.
    pub token: String,
}

/// Why a token was not accepted. Every variant is a `401` to the caller,
/// which is not told which (that would help a guesser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The token is not of the form `lethe_<id>_<secret>`.
    #[error("the token is not a Lethe API key")]
    Malformed,
    /// No key has this id, or the secret is wrong.
    #[error("unknown API key")]
    Unknown,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key expired.
    #[error("the API key expired")]
    Expired,
}

/// How long the key table is cached between store reads: a key revoked
/// by another process (the CLI) stops working within this time; one
/// revoked through this vault stops at once.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// A key's "last used" time is written at most this often.
const TOUCH_EVERY_US: i64 = 60_000_000;

/// The vault's key checker: the hashing key and a short-lived copy of the key table.
pub struct AccessKeys {
    hasher: SecretHasher,
    cache: Mutex<Option<(Instant, HashMap<String, AccessKey>)>>,
}

impl AccessKeys {
    pub(crate) fn new(master: &lethe_core::crypto::SecretKey) -> Self {
        AccessKeys {
            hasher: SecretHasher::derive(master),
            cache: Mutex::new(None),
        }
    }

    fn forget(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Vault {
    /// Makes an API key and records `access.key_created` (id, name, role,
    /// tenants, expiry — never the secret) under `actor`.
    pub fn create_api_key(
        &self,
        name: &str,
        role: Role,
        tenants: &[String],
        expires_us: Option<i64>,
        actor: &str,
        now_us: i64,
    ) -> Result<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(VaultError::Invalid(
                "name: give the key a name of 1 to 100 printable characters".into(),
            ));
        }
        if tenants.is_empty() {
            return Err(VaultError::Invalid(
                "tenant: name at least one tenant, or `*` for all".into(),
            ));
        }
        for t in tenants.iter().filter(|t| *t != "*") {
            lethe_core::TenantId::new(t).map_err(|e| VaultError::Invalid(format!("tenant: {e}")))?;
        }
        let scope = TenantScope::from_stored(tenants);
        if role == Role::SuperAdmin && scope != TenantScope::All {
            return Err(VaultError::Invalid(
                "tenant: a super_admin key covers every tenant; give `--tenant '*'`".into(),
            ));
        }
        if expires_us.is_some_and(|e| e <= now_us) {
            return Err(VaultError::Invalid("expires: the expiry must be in the future".into()));
        }
        let mut rng = rand::thread_rng();
        let mut id = [0u8; 8];
        rng.fill_bytes(&mut id);
        let id = hex::encode(id);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let secret = hex::encode(secret);
        let stored = AccessKey {
            id: id.clone(),
            name: name.to_string(),
            role: role.as_str().to_string(),
            tenants: scope.to_stored(),
            secret_hash: self.access.hasher.hash(&id, secret.as_bytes()),
            creator: actor.to_string(),
            created_us: now_us,
            expires_us,
            last_used_us: None,
            revoked_us: None,
        };
        self.store.put_access_key(&stored)?;
        self.access.forget();
        self.record(
            now_us,
            actor,
            "access.key_created",
            None,
            &serde_json::json!({
                "id": id,
                "name": stored.name,
                "role": stored.role,
                "tenants": stored.tenants,
                "expires_us": expires_us,
            }),
        )?;
        Ok(NewApiKey {
            token: format!("lethe_{id}_{secret}"),
            key: ApiKey::from_stored(&stored)?,
        })
    }

    /// Every API key, revoked and expired ones included, oldest first.
    pub fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.store.access_keys()?.iter().map(ApiKey::from_stored).collect()
    }

    /// Revokes key `id` and records `access.key_revoked` under `actor`.
    /// Revoking a revoked key changes nothing and records nothing.
    pub fn revoke_api_key(&self, id: &str, actor: &str, now_us: i64) -> Result<ApiKey> {
        let found = self
            .api_keys()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| VaultError::Invalid(format!("id: no API key `{id}`")))?;
        if self.store.revoke_access_key(id, now_us)? {
            self.access.forget();
            self.record(
                now_us,
                actor,
                "access.key_revoked",
                None,
                &serde_json::json!({"id": id, "name": found.name}),
            )?;
        }
        Ok(self
            .api_keys()?
            .into_iter()
            .find(|k| k.id == id)
            .expect("a key is never deleted"))
    }

    /// The key a bearer token belongs to, if it works at `now_us`. The
    /// secret is compared in constant time; its "last used" time is
    /// updated at most once a minute.
    pub fn authenticate(&self, token: &str, now_us: i64) -> std::result::Result<ApiKey, Denied> {
        let (id, secret) = split_token(token).ok_or(Denied::Malformed)?;
        let stored = self
            .cached_key(id)
            .map_err(|_| Denied::Unknown)?
            .ok_or(Denied::Unknown)?;
        if !self.access.hasher.matches(id, secret.as_bytes(), &stored.secret_hash) {
            return Err(Denied::Unknown);
        }
        let key = ApiKey::from_stored(&stored).map_err(|_| Denied::Unknown)?;
        if key.revoked_us.is_some() {
            return Err(Denied::Revoked);
        }
        if !key.live_at(now_us) {
            return Err(Denied::Expired);
        }
        if key.last_used_us.is_none_or(|t| now_us - t >= TOUCH_EVERY_US) {
            // Best effort: a busy catalog must not fail the request.
            if self.store.touch_access_key(id, now_us).is_ok() {
                if let Some((_, map)) = self.access.cache.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    if let Some(k) = map.get_mut(id) {
                        k.last_used_us = Some(now_us);
                    }
                }
            }
        }
        Ok(key)
    }

    fn cached_key(&self, id: &str) -> Result<Option<AccessKey>> {
        let mut cache = self.access.cache.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cache.as_ref().is_some_and(|(at, _)| at.elapsed() < CACHE_FOR);
        if !fresh {
            let map = self
                .store
                .access_keys()?
                .into_iter()
                .map(|k| (k.id.clone(), k))
                .collect();
            *cache = Some((Instant::now(), map));
        }
        Ok(cache.as_ref().and_then(|(_, m)| m.get(id).cloned()))
    }
}

/// `lethe_<16 hex>_<64 hex>` → (id, secret).
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("lethe_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_only_in_their_exact_form() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert_eq!(
            split_token(&format!("lethe_{id}_{secret}")),
            Some((id, secret.as_str()))
        );
        assert_eq!(split_token(&format!("lethe_{id}_{secret}0")), None);
        assert_eq!(split_token(&format!("Bearer lethe_{id}_{secret}")), None);
        assert_eq!(split_token("lethe__"), None);
    }

    #[test]
    fn roles_grant_in_order_and_ingest_reads_nothing() {
        assert!(!Role::Ingest.can_read());
        assert!(Role::Auditor.can_read() && !Role::Auditor.can_ingest() && !Role::Auditor.can_administer());
        assert!(Role::Admin.can_administer() && Role::Admin.can_ingest());
        assert_eq!(Role::parse("super_admin"), Ok(Role::SuperAdmin));
        assert!(Role::parse("root").unwrap_err().contains("root"));
    }
}
