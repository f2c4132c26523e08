//! The archive tier: `archive_then_delete` policies copy expired records
//! to object storage — written, read back and checked, and recorded in the
//! ledger — before the sweep deletes them; archived objects are deleted in
//! turn when their archive window ends (`expiry`); `inventory` lists and
//! verifies them; `restore` brings records back for investigation.

pub mod expiry;
pub mod format;
pub mod inventory;
pub mod restore;
pub mod target;
pub(crate) mod write;

use crate::{Result, Vault, VaultError};

pub use target::{TargetError, Targets};

impl Vault {
    /// The configured archive targets (built on first use: nothing is
    /// contacted until an operation needs it).
    pub fn archive_targets(&self) -> Result<&Targets> {
        self.archives
            .get_or_init(|| Targets::open(&self.config.archive, &self.data_dir).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| VaultError::Archive(e.clone()))
    }
}
