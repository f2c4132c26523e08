//! The vault: where configuration, keys and storage meet. It turns NDJSON
//! lines into encrypted stored records, answers decrypting queries, runs the
//! retention sweep and reports stats. The CLI and the bench harness both drive
//! it; neither touches storage or keys directly.

pub mod archive;
pub mod hold;
pub mod ingest;
pub mod keyring;
pub mod ledger;
pub mod logs;
pub mod proof;
pub mod purge;
pub mod seal;
pub mod stats;
pub mod sweep;
pub mod synth;
pub mod verify;

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
                    write_private(path, &format!("{}\n", k.to_hex()))
                        .map_err(|e| VaultError::MasterKey(format!("creating {}: {e}", path.display())))?;
                    Ok((k, true))
                }
                Err(e) => Err(VaultError::MasterKey(format!("{}: {e}", path.display()))),
            },
        }
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// An open vault.
pub struct Vault {
    store: Arc<dyn Store>,
    config: Config,
    schemas: Vec<StreamSchema>,
    book: PolicyBook,
    keys: Keyring,
    ledger_key: SecretKey,
    signer: lethe_core::checkpoint::SigningKey,
    data_dir: PathBuf,
    archives: std::sync::OnceLock<std::result::Result<archive::Targets, String>>,
    /// Whether opening created a new master key file.
    pub created_master_key: bool,
}

impl Vault {
    /// Opens the embedded store in `data_dir` with `config`.
    pub fn open(data_dir: &Path, config: Config, master: &MasterKeySource) -> Result<Vault> {
        let span = match config.store.partition {
            lethe_core::Window::Span(s) => s,
            lethe_core::Window::Forever => return Err(VaultError::Invalid("store.partition cannot be forever".into())),
        };
        let (key, created) = master.load()?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(data_dir, span)?);
        Ok(Self::with_store(store, config, &key, created, data_dir))
    }

    /// Builds a vault over any store (used by tests and other backends).
    /// `data_dir` anchors relative paths (the local archive target).
    pub fn with_store(
        store: Arc<dyn Store>,
        config: Config,
        master: &SecretKey,
        created_master_key: bool,
        data_dir: &Path,
    ) -> Vault {
        let ledger_key = lethe_core::ledger::ledger_key(master);
        let signer = lethe_core::checkpoint::SigningKey::derive(master);
        let master = MasterKey::new(master);
        let schemas = config.schemas();
        let book = config.policy_book();
        Vault {
            keys: Keyring::new(store.clone(), master, ledger_key.clone()),
            ledger_key,
            signer,
            store,
            config,
            schemas,
            book,
            data_dir: data_dir.to_path_buf(),
            archives: std::sync::OnceLock::new(),
            created_master_key,
        }
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
