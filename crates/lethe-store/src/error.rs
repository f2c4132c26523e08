//! Why a storage operation failed, and whether trying again can help.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine reported an error; `retryable` says whether the
    /// same call may succeed later (the engine was busy or locked by
    /// another writer past the wait), as opposed to a fault that a retry
    /// only repeats.
    #[error("storage backend: {source}")]
    Backend {
        /// The engine's error, kept for `source()` chains.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        /// Whether trying again can help.
        retryable: bool,
    },
    /// The caller broke the trait's contract (a batch without a key it
    /// needs, a restoration this store is not loading): a bug above the
    /// store, never retryable.
    #[error("store misused: {0}")]
    Misuse(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A new data key collided with one another writer stored first; the
    /// batch was not stored and must be prepared again.
    #[error("data key for this reference was created concurrently; retry the batch")]
    KeyConflict,
    /// Stored data is not what this version expects, or the catalog
    /// contradicts itself (nothing was changed).
    #[error("store is corrupt or from another version: {0}")]
    Corrupt(String),
    /// Committed data is gone from disk (a partition file was removed):
    /// reported, never silently replaced.
    #[error("committed data is missing: {0}")]
    Lost(String),
    /// A data key the batch was encrypted under was destroyed (by an
    /// erasure) after the batch was prepared; nothing was stored and the
    /// batch must be prepared again with live keys.
    #[error("a data key of this batch was destroyed by an erasure; retry the batch")]
    KeyDestroyed,
}

impl StoreError {
    /// Whether trying again (after preparing the batch again) can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::KeyConflict | StoreError::KeyDestroyed => true,
            StoreError::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for storage operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
