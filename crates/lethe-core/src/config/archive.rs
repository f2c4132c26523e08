//! `[archive]`: archive targets, object cutting and compression, and the archive rule a policy carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

/// `[archive]`: where `archive_then_delete` policies copy records, and how
/// archive objects are cut and compressed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// An object is closed once this many bytes of NDJSON are in it (MiB).
    #[serde(default = "default_object_max_mb")]
    pub object_max_mb: u64,
    /// zstd level of archive objects: 1–19, or a fast level -7…-1 (with
    /// literals still Huffman-coded).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Objects larger than this (compressed, KiB) are uploaded in parts.
    #[serde(default = "default_multipart_above_kb")]
    pub multipart_above_kb: u64,
    /// How long records restored into the store (`archive restore
    /// --into-store`) stay there before the sweep removes them, counted
    /// from the restore.
    #[serde(default = "default_restore_window")]
    pub restore_window: Window,
    /// Named targets. A target named `local` (a directory `archive` under
    /// the data directory) exists unless configured otherwise.
    #[serde(default)]
    pub targets: BTreeMap<String, ArchiveTargetConfig>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            object_max_mb: default_object_max_mb(),
            zstd_level: default_zstd_level(),
            multipart_above_kb: default_multipart_above_kb(),
            restore_window: default_restore_window(),
            targets: BTreeMap::new(),
        }
    }
}

impl ArchiveConfig {
    /// The targets in force: the configured ones plus the built-in `local`.
    pub fn effective_targets(&self) -> BTreeMap<String, ArchiveTargetConfig> {
        let mut t = self.targets.clone();
        t.entry("local".into()).or_insert_with(|| ArchiveTargetConfig {
            kind: TargetKind::Local,
            path: Some("archive".into()),
            ..ArchiveTargetConfig::default()
        });
        t
    }
}

/// What kind of object storage a target is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A directory (relative paths are under the data directory).
    #[default]
    Local,
    /// S3 or an S3-compatible server.
    S3,
}

/// `[archive.targets.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveTargetConfig {
    /// `local` or `s3`.
    #[serde(default)]
    pub kind: TargetKind,
    /// Local: the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// S3: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// S3: endpoint URL for S3-compatible servers (default: AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3: region (default `AWS_REGION` or `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3: key prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// S3: access key id (default `AWS_ACCESS_KEY_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// S3: secret (default `AWS_SECRET_ACCESS_KEY`); never printed.
    #[serde(default, skip_serializing)]
    pub secret_access_key: Option<String>,
    /// S3: path-style requests (`endpoint/bucket/key`), as self-hosted servers want.
    #[serde(default)]
    pub path_style: bool,
    /// S3: allow plain `http://` endpoints (loopback test servers).
    #[serde(default)]
    pub allow_http: bool,
    /// S3: retries of a failed request (with backoff) before it counts as failed.
    #[serde(default = "default_retries")]
    pub retries: usize,
}

impl Default for ArchiveTargetConfig {
    fn default() -> Self {
        ArchiveTargetConfig {
            kind: TargetKind::Local,
            path: None,
            bucket: None,
            endpoint: None,
            region: None,
            prefix: None,
            access_key_id: None,
            secret_access_key: None,
            path_style: false,
            allow_http: false,
            retries: default_retries(),
        }
    }
}

pub(super) fn default_restore_window() -> Window {
    Window::Span(30 * 86_400)
}

pub(super) fn default_object_max_mb() -> u64 {
    256
}
pub(super) fn default_zstd_level() -> i32 {
    // Fast level -3 (literals still Huffman-coded): most of an archive line
    // is base64 ciphertext, where match finding finds nothing; against
    // level 1 it archives ~11% faster for objects ~1% larger, and level 3
    // cost 22% more time for 0.3% smaller objects (docs/benchmarks.md).
    -3
}
pub(super) fn default_multipart_above_kb() -> u64 {
    16 * 1024
}
pub(super) fn default_retries() -> usize {
    3
}

/// A policy's archive settings in evaluation form, or why they are wrong
/// (field name, message).
pub fn archive_rule(
    action: PolicyAction,
    window: Window,
    archive: &Option<String>,
    archive_window: &Option<Window>,
) -> Result<Option<ArchiveRule>, (&'static str, String)> {
    if action != PolicyAction::ArchiveThenDelete {
        if archive.is_some() {
            return Err(("archive", "is only valid with action = \"archive_then_delete\"".into()));
        }
        if archive_window.is_some() {
            return Err((
                "archive_window",
                "is only valid with action = \"archive_then_delete\"".into(),
            ));
        }
        return Ok(None);
    }
    let Some(aw) = *archive_window else {
        return Err((
            "archive_window",
            "is required with action = \"archive_then_delete\" (e.g. \"365d\" or \"forever\")".into(),
        ));
    };
    let shorter = match (aw, window) {
        (Window::Forever, _) => false,
        (Window::Span(_), Window::Forever) => true,
        (Window::Span(a), Window::Span(w)) => a < w,
    };
    if shorter {
        return Err((
            "archive_window",
            format!("`{aw}` is shorter than the policy's window `{window}` (both count from event time)"),
        ));
    }
    Ok(Some(ArchiveRule {
        target: archive.clone().unwrap_or_else(|| "local".into()),
        window: aw,
    }))
}
