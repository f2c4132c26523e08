//! `[schedule]`: when `lethe serve` runs the sweep and the verification by
//! itself (cron expressions, UTC; `off` turns a job off).

use serde::{Deserialize, Serialize};

use crate::cron::Cron;

/// `[schedule]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// When the retention sweep runs (with it: the archive clock and the
    /// expiry of restorations). Default daily at 02:00 UTC.
    #[serde(default = "default_sweep")]
    pub sweep: String,
    /// When the whole store is verified. Default daily at 03:30 UTC, after
    /// the sweep.
    #[serde(default = "default_verify")]
    pub verify: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            sweep: default_sweep(),
            verify: default_verify(),
        }
    }
}

fn default_sweep() -> String {
    "0 2 * * *".into()
}
fn default_verify() -> String {
    "30 3 * * *".into()
}

/// Parses one schedule entry: `None` for `off`.
pub fn parse_entry(text: &str) -> Result<Option<Cron>, crate::cron::CronError> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some)
}

impl ScheduleConfig {
    /// The sweep's schedule, `None` when off. The configuration was
    /// validated at load, so the expression parses.
    pub fn sweep_cron(&self) -> Option<Cron> {
        parse_entry(&self.sweep).ok().flatten()
    }

    /// The verification's schedule, `None` when off.
    pub fn verify_cron(&self) -> Option<Cron> {
        parse_entry(&self.verify).ok().flatten()
    }
}
