//! The vault: where configuration, keys and storage meet. It turns NDJSON
//! lines into encrypted stored records, answers decrypting queries, runs the
//! retention sweep and reports stats. The CLI and the bench harness both drive
//! it; neither touches storage or keys directly.

pub mod access;
pub mod archive;
pub mod commits;
pub mod erasure;
pub mod hold;
pub mod ingest;
mod intent;
pub mod keyring;
pub mod ledger;
pub mod logs;
pub mod proof;
pub mod purge;
pub mod schedule;
pub mod seal;
pub mod settings;
pub mod stats;
pub mod sweep;
pub mod synth;
pub mod verify;
pub mod witness;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lethe_core::config::Config;
use lethe_core::crypto::{CryptoError, MasterKey, SecretKey};
use lethe_core::model::StreamSchema;
use lethe_core::policy::PolicyBook;
use lethe_store::{SqliteStore, Store, StoreError};

use keyring::Keyring;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The master key could not be loaded or created.
    #[error("master key: {0}")]
    MasterKey(String),
    /// Reading input failed.
    #[error("reading input: {0}")]
    Input(#[from] std::io::Error),
    /// A request was invalid.
    #[error("{0}")]
    Invalid(String),
    /// A request was refused (e.g. it would remove records under legal hold).
    #[error("refused: {0}")]
    Refused(String),
    /// An archive target failed (unreachable, refused, or its copy did not check out).
    #[error("{0}")]
    Archive(String),
}

impl From<archive::TargetError> for VaultError {
    fn from(e: archive::TargetError) -> Self {
        VaultError::Archive(e.to_string())
    }
}

/// Result alias for vault operations.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// A key given directly (from `LETHE_MASTER_KEY`), hex or base64.
    Value(String),
    /// A key file; created with mode 0600 when `create` and missing.
    File {
        /// Path of the file.
        path: PathBuf,
        /// Create it (with a fresh random key) if it does not exist.
        create: bool,
    },
}

impl MasterKeySource {
    /// Loads the key, creating the file when asked. Errors never contain key material.
    pub fn load(&self) -> Result<(SecretKey, bool)> {
        match self {
            MasterKeySource::Value(v) => Ok((
                SecretKey::parse(v).map_err(|e| VaultError::MasterKey(format!("LETHE_MASTER_KEY: {e}")))?,
                false,
            )),
            MasterKeySource::File { path, create } => match std::fs::read_to_string(path) {
                Ok(s) => Ok((
                    SecretKey::parse(&s).map_err(|e| VaultError::MasterKey(format!("{}: {e}", path.display())))?,
                    false,
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && *create => {
                    let k = SecretKey::generate();
                    match create_private(path, &format!("{}\n", k.to_hex())) {
                        Ok(()) => Ok((k, true)),
                        // Another process created it first: use that one.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => MasterKeySource::File {
                            path: path.clone(),
                            create: false,
                        }
                        .load(),
                        Err(e) => Err(VaultError::MasterKey(format!("creating {}: {e}", path.display()))),
                    }
                }
                Err(e) => Err(VaultError::MasterKey(format!("{}: {e}", path.display()))),
            },
        }
    }
}

/// Creates `path` with `contents` and mode 0600, atomically: the key is
/// written and synced under a temporary name, then linked into place —
/// so a crash never leaves an empty or half-written key file, and of two
/// processes creating it at once exactly one wins (the other gets
/// `AlreadyExists` and reads the winner's).
fn create_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// An open vault.
pub struct Vault {
    store: Arc<dyn Store>,
    config: Config,
    schemas: Vec<StreamSchema>,
    /// The policies in force: the configuration's, with the tenant
    /// settings made through the API (see [`settings`]). Replaced only
    /// under the job lock, at the start of a sweep.
    book: std::sync::RwLock<Arc<PolicyBook>>,
    keys: Keyring,
    ledger_key: SecretKey,
    signer: lethe_core::checkpoint::SigningKey,
    data_dir: PathBuf,
    archives: std::sync::OnceLock<std::result::Result<archive::Targets, String>>,
    /// Batches of concurrent writers waiting to share one store append.
    commits: commits::CommitQueue,
    /// Batches prepared again because a key they used conflicted with
    /// another writer's or was destroyed meanwhile (for tests and figures).
    prepared_again: std::sync::atomic::AtomicU64,
    /// One seal at a time in this process: concurrent requests that each
    /// find a chain due must not each sign it (see `Vault::seal`).
    sealing: std::sync::Mutex<()>,
    /// API keys' hashing key and cache.
    access: access::AccessKeys,
    /// One tenant-settings change at a time.
    settings_lock: settings::SettingsLock,
    /// One change to the open erasure jobs at a time.
    jobs_lock: erasure::JobsLock,
    /// Seals erasure requests (they name subjects) while their job is open.
    sealer: lethe_core::crypto::CatalogSealer,
    /// Whether opening created a new master key file.
    pub created_master_key: bool,
}

impl Vault {
    /// Opens the store `config` names — the embedded one in `data_dir`, or
    /// the PostgreSQL one at `store.url` (then `data_dir` holds only the
    /// master key file and a local archive, if configured).
    pub fn open(data_dir: &Path, config: Config, master: &MasterKeySource) -> Result<Vault> {
        let span = match config.store.partition {
            lethe_core::Window::Span(s) => s,
            lethe_core::Window::Forever => return Err(VaultError::Invalid("store.partition cannot be forever".into())),
        };
        let (key, created) = master.load()?;
        let store: Arc<dyn Store> = match (config.store.backend.as_str(), &config.store.url) {
            ("postgres", Some(url)) => {
                tracing::debug!(schema = %config.store.schema, "opening the PostgreSQL store");
                let opts = lethe_store::postgres::PgOptions {
                    url: url.clone(),
                    schema: config.store.schema.clone(),
                    pool_size: config.store.pool_size,
                    ca_file: config.store.ca_file.as_ref().map(|f| data_dir.join(f)),
                };
                Arc::new(lethe_store::postgres::PgStore::open(&opts, span)?)
            }
            _ => {
                tracing::debug!(dir = %data_dir.display(), "opening the embedded store");
                Arc::new(SqliteStore::open(data_dir, span)?)
            }
        };
        Self::with_store(store, config, &key, created, data_dir)
    }

    /// Builds a vault over any store (used by tests and other backends).
    /// `data_dir` anchors relative paths (the local archive target).
    ///
    /// Refuses a master key that is not the store's before anything is
    /// written ([`VaultError::MasterKey`]), and, once per store, records
    /// the data keys that exist in the ledger (`key.inventory`): from then
    /// on every key has a ledger entry, which `verify` holds the key table to.
    pub fn with_store(
        store: Arc<dyn Store>,
        config: Config,
        master: &SecretKey,
        created_master_key: bool,
        data_dir: &Path,
    ) -> Result<Vault> {
        check_master(&*store, master)?;
        let ledger_key = lethe_core::ledger::ledger_key(master);
        let access = access::AccessKeys::new(master);
        let sealer = lethe_core::crypto::CatalogSealer::derive(master);
        let signer = lethe_core::checkpoint::SigningKey::derive(master);
        let master = MasterKey::new(master);
        let schemas = config.schemas();
        let book = settings::book_with(&config, &settings::read(&*store)?);
        let commits = commits::CommitQueue::new(config.store.group_commit_records);
        let vault = Vault {
            keys: Keyring::new(store.clone(), master, ledger_key.clone()),
            ledger_key,
            signer,
            store,
            config,
            schemas,
            book: std::sync::RwLock::new(Arc::new(book)),
            data_dir: data_dir.to_path_buf(),
            archives: std::sync::OnceLock::new(),
            commits,
            prepared_again: Default::default(),
            sealing: Default::default(),
            access,
            settings_lock: Default::default(),
            jobs_lock: Default::default(),
            sealer,
            created_master_key,
        };
        vault.record_key_inventory()?;
        Ok(vault)
    }

    /// How many store appends this vault made for how many ingest batches:
    /// fewer appends than batches when concurrent writers shared them.
    pub fn commit_counts(&self) -> commits::CommitCounts {
        self.commits.counts()
    }

    /// How many batches were prepared again after a key conflict or a key
    /// destroyed while they were in flight: none, within one process,
    /// unless an erasure ran meanwhile or another process shares the store.
    pub fn batches_prepared_again(&self) -> u64 {
        self.prepared_again.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tries, without waiting, to become the leader of the nodes working
    /// on this vault's store (see `Store::try_lead`): `None` while another
    /// node leads.
    pub fn try_lead(&self) -> Result<Option<Box<dyn lethe_store::Lease>>> {
        Ok(self.store.try_lead()?)
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The retention and capture rules in force: built at open, and again
    /// at the start of each sweep when the API's tenant settings changed.
    pub fn policy_book(&self) -> Arc<PolicyBook> {
        self.book.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Once per store: a `key.inventory` ledger entry per tenant listing
    /// the data keys that exist (a store from before every new key was
    /// entered in the ledger). A new store has none to list.
    fn record_key_inventory(&self) -> Result<()> {
        if self.store.meta(KEY_INVENTORY)?.is_some() {
            return Ok(());
        }
        let mut by_tenant: std::collections::BTreeMap<String, Vec<lethe_store::KeyId>> = Default::default();
        for k in self.store.all_data_keys(None)? {
            by_tenant.entry(k.tenant.to_string()).or_default().push(k.id);
        }
        let now = chrono::Utc::now().timestamp_micros();
        for (tenant, ids) in &by_tenant {
            self.record(
                now,
                "system/upgrade",
                "key.inventory",
                Some(tenant),
                &serde_json::json!({
                    "ids": ids,
                    "note": "data keys that existed when this store was first opened by a version that enters every new key in the ledger",
                }),
            )?;
        }
        self.store.put_meta_once(KEY_INVENTORY, "1")?;
        Ok(())
    }
}

/// Catalog mark: the data keys that existed before per-batch key entries
/// are in the ledger (`key.inventory`).
const KEY_INVENTORY: &str = "keys.inventory";

/// Catalog mark holding the master key's check value.
const MASTER_CHECK: &str = "master.check";

/// Refuses a master key that does not open the store, before anything is
/// written: against the stored check value, or — for a store from before
/// the check existed — against a stored tenant key or ledger entry, after
/// which the check value is stored.
fn check_master(store: &dyn Store, master: &SecretKey) -> Result<()> {
    let want = lethe_core::crypto::master_check(master);
    let wrong = || {
        VaultError::MasterKey(
            "the master key does not open this store (it is not the key the store was created with); \
             nothing was done — supply the store's key (LETHE_MASTER_KEY or keys.master_key_file)"
                .into(),
        )
    };
    match store.meta(MASTER_CHECK)? {
        Some(v) if v == want => return Ok(()),
        Some(_) => return Err(wrong()),
        None => {}
    }
    let mk = MasterKey::new(master);
    let mut opened = false;
    for c in store.chains()? {
        let Ok(t) = lethe_core::TenantId::new(&c.tenant) else {
            continue;
        };
        if let Some(w) = store.tenant_key(&t)? {
            if mk.open_tenant(t.as_str(), &w).is_err() {
                return Err(wrong());
            }
            opened = true;
            break;
        }
    }
    if !opened {
        let ledger_key = lethe_core::ledger::ledger_key(master);
        if let Some(e) = store.ledger(1, 1)?.first() {
            if lethe_core::ledger::check_entry(&ledger_key, e).is_err() {
                return Err(wrong());
            }
        }
    }
    // Of two processes storing a check value at once, the first wins.
    if store.put_meta_once(MASTER_CHECK, &want)? != want {
        return Err(wrong());
    }
    Ok(())
}
