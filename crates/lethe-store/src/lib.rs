//! Storage for Lethe: the domain-level [`Store`] trait, the embedded SQLite
//! backend, and the conformance suite every backend must pass.
//!
//! Nothing above this crate sees a table, a file or a SQL statement: callers
//! speak in records, groups, retention targets and wrapped keys.

mod catalog;
pub mod chain;
pub mod crashpoint;
mod filter;
mod plan;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub mod row;

use lethe_core::checkpoint::hex32;
use lethe_core::crypto::SecretKey;
use lethe_core::hold::HoldScope;
use lethe_core::integrity::Digests;
use lethe_core::merkle::Hash;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{StreamId, TenantId};
use serde::{Deserialize, Serialize};

pub use lethe_core::ledger::Entry as LedgerEntry;
pub use sqlite::SqliteStore;

mod error;
mod layout;
mod record;
mod removal;
mod store;

pub use catalog::*;
pub use error::*;
pub use layout::*;
pub use record::*;
pub use removal::*;
pub use store::*;
