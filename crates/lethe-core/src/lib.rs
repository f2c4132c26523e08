//! Pure domain logic of Lethe: the record model, configuration, retention and
//! capture policy evaluation, and the crypto envelope. Nothing here touches the
//! disk, the network or the clock; time comes in as an argument.

pub mod checkpoint;
pub mod config;
pub mod cron;
pub mod crypto;
pub mod duration;
pub mod hold;
pub mod integrity;
pub mod ledger;
pub mod merkle;
pub mod model;
pub mod policy;
pub mod record;

pub use duration::Window;
pub use model::{CaptureMode, Classification, FieldClass, StreamId, TenantId};
