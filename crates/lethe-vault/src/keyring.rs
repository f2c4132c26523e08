//! Key resolution with a bounded in-memory cache: tenant keys, data keys by
//! reference (for encryption) and by id (for decryption).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lethe_core::crypto::{DataKey, MasterKey, SecretKey, TenantKeys};
use lethe_core::ledger::Draft;
use lethe_core::TenantId;
use lethe_store::{KeyId, Store, StoredKey};

use crate::Result;

/// Cached keys are dropped wholesale past this many entries, bounding memory.
const CACHE_LIMIT: usize = 100_000;

/// Resolves and caches keys for one vault.
pub struct Keyring {
    store: Arc<dyn Store>,
    master: MasterKey,
    ledger_key: SecretKey,
    inner: Mutex<Cache>,
    generation: std::sync::atomic::AtomicU64,
    /// Cached data keys past which the cache is cut back ([`CACHE_LIMIT`]).
    limit: usize,
}

/// A resolved data key: its id and the key (`None` once destroyed).
pub type Resolved = (KeyId, Option<DataKey>);

#[derive(Default)]
struct Cache {
    tenants: HashMap<TenantId, Arc<TenantKeys>>,
    by_ref: HashMap<TenantId, HashMap<Vec<u8>, Resolved>>,
    /// By id, with the tenant the key belongs to.
    by_id: HashMap<KeyId, (TenantId, Option<DataKey>)>,
    /// The store's key epoch these data keys were read at (see
    /// `Store::key_epoch`): when it moves, a key may have been destroyed
    /// by another process, and the data keys are read again.
    epoch: Option<u64>,
    /// Keys this keyring made for batches not yet known to be stored, by
    /// id. Every batch that uses one carries it (the store keeps the first
    /// copy), so a batch never depends on another's committing first. Kept
    /// when the cache is cut back for size: the batch prepared next must
    /// reuse a key still in flight rather than make a second one for the
    /// same reference, which the store refuses (a key conflict, and every
    /// batch in the pipeline prepared again — with 100 tenants' subjects,
    /// 51 of 122 batches were).
    in_flight: HashMap<KeyId, (StoredKey, DataKey)>,
}

impl Cache {
    /// Appends key `id` to a batch's `new_keys` when it is still in flight
    /// (made for a batch not known to be stored).
    fn carry(&self, id: KeyId, new_keys: &mut Vec<StoredKey>) {
        if let Some((k, _)) = self.in_flight.get(&id) {
            new_keys.push(k.clone());
        }
    }
}

impl Keyring {
    /// A keyring over a store's key tables.
    pub fn new(store: Arc<dyn Store>, master: MasterKey, ledger_key: SecretKey) -> Self {
        Keyring {
            store,
            master,
            ledger_key,
            inner: Mutex::new(Cache::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            limit: CACHE_LIMIT,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's keys; when absent and `create` names an actor, the
    /// tenant root is created on that actor's authority (its
    /// `key.tenant_created` ledger entry is theirs).
    pub fn tenant(&self, tenant: &TenantId, create: Option<&str>, now_us: i64) -> Result<Option<Arc<TenantKeys>>> {
        if let Some(k) = self.cache().tenants.get(tenant) {
            return Ok(Some(k.clone()));
        }
        let keys = match (self.store.tenant_key(tenant)?, create) {
            (Some(w), _) => self.master.open_tenant(tenant.as_str(), &w)?,
            (None, Some(actor)) => {
                let (_, wrapped) = self.master.new_tenant(tenant.as_str());
                let stored = self.store.put_tenant_key(tenant, &wrapped, now_us)?;
                if stored == wrapped {
                    // This writer created the tenant's root key: a key event for the ledger.
                    let d = Draft {
                        ts_us: now_us,
                        actor: actor.into(),
                        kind: "key.tenant_created".into(),
                        tenant: Some(tenant.to_string()),
                        body: "{}".into(),
                    };
                    self.store
                        .append_ledger(&mut |seq, prev| d.seal(&self.ledger_key, seq, prev))?;
                }
                self.master.open_tenant(tenant.as_str(), &stored)?
            }
            (None, None) => return Ok(None),
        };
        let keys = Arc::new(keys);
        self.cache().tenants.insert(tenant.clone(), keys.clone());
        Ok(Some(keys))
    }

    /// Data keys for `refs` of one tenant. Keys the store does not have
    /// are created here; every key the batch uses that is not known to be
    /// stored — made now, or made for another batch still in flight — is
    /// appended to `new_keys`, and the caller stores them with the batch,
    /// before its records (the store keeps the first copy of a key two
    /// batches carry). `None` for a destroyed key.
    ///
    /// Concurrent writers share keys: a writer that finds no key for a
    /// reference in the cache or the store looks in the cache again before
    /// making one, since another writer may have made it meanwhile — two
    /// keys for one reference are a conflict, and every batch in flight is
    /// prepared again.
    ///
    /// `generation` is the [`Keyring::generation`] the caller's batch is
    /// prepared under. A batch whose generation is already stale (the
    /// cache was forgotten while it was prepared, and it will be prepared
    /// again) leaves none of its new keys in the cache.
    pub fn data_keys(
        &self,
        tenant: &TenantId,
        tk: &TenantKeys,
        refs: &[Vec<u8>],
        new_keys: &mut Vec<StoredKey>,
        generation: u64,
    ) -> Result<Vec<Resolved>> {
        let mut out: Vec<Option<Resolved>> = Vec::with_capacity(refs.len());
        let mut missing = Vec::new();
        {
            let c = self.cache();
            let known = c.by_ref.get(tenant);
            for (i, r) in refs.iter().enumerate() {
                match known.and_then(|m| m.get(r.as_slice())) {
                    Some(v) => {
                        c.carry(v.0, new_keys);
                        out.push(Some(v.clone()));
                    }
                    None => {
                        out.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(out.into_iter().map(|o| o.expect("every slot filled")).collect());
        }
        let wanted: Vec<Vec<u8>> = missing.iter().map(|&i| refs[i].clone()).collect();
        let stored = self.store.data_keys_by_ref(tenant, &wanted)?;
        let mut c = self.cache();
        // Read under the cache lock, which `forget_data_keys` holds while it
        // moves the generation on.
        let current = self.generation() == generation;
        if c.by_id.len() + missing.len() > self.limit {
            c.by_ref.clear();
            c.by_id.clear();
            let Cache {
                by_ref,
                by_id,
                in_flight,
                ..
            } = &mut *c;
            for (id, (k, dk)) in in_flight.iter() {
                by_ref
                    .entry(k.tenant.clone())
                    .or_default()
                    .insert(k.key_ref.clone(), (*id, Some(dk.clone())));
                by_id.insert(*id, (k.tenant.clone(), Some(dk.clone())));
            }
        }
        for (&i, found) in missing.iter().zip(stored) {
            let resolved = match found {
                Some(k) => {
                    let dk = match &k.wrapped {
                        Some(w) => Some(tk.open_data_key(tenant.as_str(), &refs[i], w)?),
                        None => None,
                    };
                    (k.id, dk)
                }
                None => {
                    // Made by another writer since this one looked?
                    let made = c.by_ref.get(tenant).and_then(|m| m.get(refs[i].as_slice())).cloned();
                    if let Some(v) = made {
                        c.carry(v.0, new_keys);
                        out[i] = Some(v);
                        continue;
                    }
                    let (dk, wrapped) = tk.new_data_key(tenant.as_str(), &refs[i]);
                    // Ids are random so that they need no round trip to the
                    // store; a collision is caught by the store as a conflict.
                    let id = (rand::random::<u64>() >> 1) as KeyId;
                    let key = StoredKey {
                        id,
                        tenant: tenant.clone(),
                        key_ref: refs[i].clone(),
                        wrapped: Some(wrapped),
                    };
                    if current {
                        c.in_flight.insert(id, (key.clone(), dk.clone()));
                    }
                    new_keys.push(key);
                    (id, Some(dk))
                }
            };
            if current {
                c.by_ref
                    .entry(tenant.clone())
                    .or_default()
                    .insert(refs[i].clone(), resolved.clone());
                c.by_id.insert(resolved.0, (tenant.clone(), resolved.1.clone()));
            }
            out[i] = Some(resolved);
        }
        Ok(out.into_iter().map(|o| o.expect("every slot filled")).collect())
    }

    /// Drops the cached data keys if any key was destroyed since they were
    /// read (by this process or another): a destroyed key must never
    /// encrypt a new record nor decrypt an old copy. One small read.
    pub fn refresh(&self) -> Result<()> {
        let epoch = self.store.key_epoch()?;
        let stale = {
            let mut c = self.cache();
            let stale = c.epoch.is_some_and(|e| e != epoch);
            c.epoch = Some(epoch);
            stale
        };
        if stale {
            self.forget_data_keys();
        }
        Ok(())
    }

    /// Forgets every cached data key (after a batch's new keys conflicted
    /// with keys another writer stored first, or one of its keys was
    /// destroyed meanwhile).
    pub fn forget_data_keys(&self) {
        let mut c = self.cache();
        c.by_ref.clear();
        c.by_id.clear();
        c.in_flight.clear();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Notes that `keys` (a batch's new keys) are stored: they need no
    /// longer outlive a cut of the cache.
    pub fn stored(&self, keys: &[StoredKey]) {
        let mut c = self.cache();
        if c.in_flight.is_empty() {
            return;
        }
        for k in keys {
            c.in_flight.remove(&k.id);
        }
    }

    /// Changes whenever cached data keys are forgotten: a batch prepared
    /// under an older generation may use a key that was never stored.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Data keys of `tenant` by id, for decryption: open, destroyed by an
    /// erasure, or unusable — missing from the key table, another
    /// tenant's (a record never opens under a key that is not its own
    /// tenant's), or not opening (altered). Unusable keys are reported by
    /// readers, never shown as erased.
    pub fn by_ids(&self, tenant: &TenantId, ids: &[KeyId], now_us: i64) -> Result<HashMap<KeyId, KeyFound>> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        {
            let c = self.cache();
            for id in ids {
                match c.by_id.get(id) {
                    Some((t, k)) if t == tenant => {
                        out.insert(
                            *id,
                            match k {
                                Some(k) => KeyFound::Open(k.clone()),
                                None => KeyFound::Destroyed,
                            },
                        );
                    }
                    Some(_) => {
                        out.insert(
                            *id,
                            KeyFound::Unusable(format!("data key {id} belongs to another tenant")),
                        );
                    }
                    None => missing.push(*id),
                }
            }
        }
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            for k in self.store.data_keys(&missing)? {
                let (id, owner, key_ref) = (k.id, k.tenant, k.key_ref);
                if &owner != tenant {
                    out.insert(
                        id,
                        KeyFound::Unusable(format!("data key {id} belongs to another tenant")),
                    );
                    continue;
                }
                let found = match k.wrapped {
                    Some(w) => {
                        let tk = self
                            .tenant(&owner, None, now_us)?
                            .expect("a tenant with data keys has a root");
                        match tk.open_data_key(owner.as_str(), &key_ref, &w) {
                            Ok(dk) => {
                                self.cache().by_id.insert(id, (owner, Some(dk.clone())));
                                KeyFound::Open(dk)
                            }
                            Err(_) => KeyFound::Unusable(format!(
                                "data key {id} does not open (its stored form was altered or swapped)"
                            )),
                        }
                    }
                    None => {
                        self.cache().by_id.insert(id, (owner, None));
                        KeyFound::Destroyed
                    }
                };
                out.insert(id, found);
            }
            for id in missing {
                out.entry(id)
                    .or_insert_with(|| KeyFound::Unusable(format!("data key {id} is missing from the key table")));
            }
        }
        Ok(out)
    }
}

/// What a lookup of a record's data key found.
#[derive(Debug, Clone)]
pub enum KeyFound {
    /// The key, open.
    Open(DataKey),
    /// Destroyed by an erasure: the record's personal fields are erased.
    Destroyed,
    /// Missing, another tenant's, or not opening: the record cannot be
    /// read, and that is a fault to report, not an erasure.
    Unusable(String),
}

impl KeyFound {
    /// The open key, if it is one.
    pub fn key(&self) -> Option<&DataKey> {
        match self {
            KeyFound::Open(k) => Some(k),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ingest pipeline prepares the next batch while the store writes
    /// the last; when that write meets a key conflict, the cache is
    /// forgotten and the batch prepared again. A prepare that began before
    /// (its batch will be prepared again too) must not leave its own new
    /// keys — never to be stored — in the cache for the next prepare, which
    /// would take one as already stored and never store it: records
    /// acknowledged under a key missing from the key table.
    #[test]
    fn keys_made_by_a_stale_prepare_are_not_handed_to_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(lethe_store::SqliteStore::open(dir.path(), 86_400).unwrap());
        let kr = Keyring::new(store, MasterKey::new(&SecretKey::generate()), SecretKey::generate());
        let t = TenantId::new("acme").unwrap();
        let tk = kr.tenant(&t, Some("test"), 0).unwrap().unwrap();
        let stale = kr.generation();
        // Meanwhile another batch met a conflict.
        kr.forget_data_keys();
        let refs = [b"s:subject".to_vec()];
        let mut made_stale = Vec::new();
        let a = kr.data_keys(&t, &tk, &refs, &mut made_stale, stale).unwrap();
        assert_eq!(made_stale.len(), 1);
        // The batch prepared next (under the current generation) makes the
        // key itself, so that it stores it.
        let mut made = Vec::new();
        let b = kr.data_keys(&t, &tk, &refs, &mut made, kr.generation()).unwrap();
        assert_eq!(made.len(), 1, "the next batch must store the key it encrypts under");
        assert_eq!(made[0].id, b[0].0);
        assert_ne!(a[0].0, b[0].0);
        // A key made under the current generation is handed on, and
        // carried while its batch is not stored.
        let mut again = Vec::new();
        let c = kr.data_keys(&t, &tk, &refs, &mut again, kr.generation()).unwrap();
        assert_eq!(again, made);
        assert_eq!(c[0].0, b[0].0);
    }

    /// With 100 tenants' subjects the cache is cut back every few batches.
    /// A key the last batch made and has not stored yet must survive the
    /// cut: the next batch, not finding it, would make a second key for the
    /// same subject, the store would refuse it, and every batch in the
    /// pipeline would be prepared again.
    #[test]
    fn a_key_in_flight_survives_a_cut_of_the_cache_until_its_batch_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(lethe_store::SqliteStore::open(dir.path(), 86_400).unwrap());
        let mut kr = Keyring::new(store, MasterKey::new(&SecretKey::generate()), SecretKey::generate());
        kr.limit = 3;
        let t = TenantId::new("acme").unwrap();
        let tk = kr.tenant(&t, Some("test"), 0).unwrap().unwrap();
        let g = kr.generation();
        let a = [b"s:a".to_vec()];
        let mut made_a = Vec::new();
        let first = kr.data_keys(&t, &tk, &a, &mut made_a, g).unwrap();
        // The next batch brings three other subjects: the cache is cut.
        let others = [b"s:b".to_vec(), b"s:c".to_vec(), b"s:d".to_vec()];
        kr.data_keys(&t, &tk, &others, &mut Vec::new(), g).unwrap();
        let mut made = Vec::new();
        let again = kr.data_keys(&t, &tk, &a, &mut made, g).unwrap();
        assert_eq!(made, made_a, "the key in flight is carried, not made a second time");
        assert_eq!(again[0].0, first[0].0);
        // Once its batch is stored, the key is an ordinary cache entry,
        // which the next batch no longer carries.
        kr.stored(&made_a);
        let mut carried = Vec::new();
        kr.data_keys(&t, &tk, &a, &mut carried, g).unwrap();
        assert!(carried.is_empty(), "{carried:?}");
        let c = kr.cache();
        assert!(!c.in_flight.contains_key(&first[0].0));
        assert_eq!(c.in_flight.len(), 3, "the other batch's keys are still in flight");
    }
}
