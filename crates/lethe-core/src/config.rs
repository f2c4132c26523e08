//! `lethe.toml`: named profiles, `LETHE_…` environment overrides, strict keys,
//! and the effective configuration the rest of the program runs on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Window;
use crate::model::{CaptureMode, Classification, FieldClass, FieldSpec, StreamId, StreamSchema, TenantId};
use crate::policy::{Action, ArchiveRule, CaptureRule, PolicyBook, RetentionRule, Selector};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML does not parse.
    #[error("{source_name}: {message}")]
    Syntax {
        /// File name or `built-in defaults`.
        source_name: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key or value is wrong; `path` names it (`retention.policy[2].window`).
    #[error("{source_name}: at `{path}`: {message}")]
    Invalid {
        /// File name or `built-in defaults`.
        source_name: String,
        /// Dotted path of the offending key.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// `--profile` names a profile the file does not define.
    #[error("unknown profile `{0}` (defined: {1})")]
    UnknownProfile(String, String),
    /// An environment override could not be applied.
    #[error("environment variable {0}: {1}")]
    Env(String, String),
}

/// The whole configuration file, as written (before profiles are applied).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Storage settings.
    #[serde(default)]
    pub store: StoreConfig,
    /// Key management settings.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Which tenants may ingest.
    #[serde(default)]
    pub tenants: TenantsConfig,
    /// Declared streams.
    #[serde(default = "default_streams")]
    pub streams: Vec<StreamConfig>,
    /// Capture rules (most specific wins; default `full`).
    #[serde(default)]
    pub capture: Vec<CaptureConfig>,
    /// Retention defaults and policies.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Merkle checkpoint cadence.
    #[serde(default)]
    pub integrity: IntegrityConfig,
    /// Ledger retention.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Copies of records kept outside Lethe (SIEM forwarders, data
    /// warehouse loads…): listed in every erasure receipt as outside its reach.
    #[serde(default)]
    pub exports: Vec<ExportConfig>,
    /// Archive targets (`archive_then_delete` policies copy records there).
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Where signed ledger heads are published, outside the vault, so that
    /// `lethe verify --witness` can tell a rolled-back vault.
    #[serde(default)]
    pub witness: WitnessConfig,
}

/// `[witness]`: places the vault publishes its signed ledger head (and the
/// checkpoints since the last publication) to after every command that
/// changed the ledger. Keep them where whoever can rewrite the data
/// directory cannot: another host, a write-once bucket, an operator's log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// A file each head is appended to as one JSON line (relative paths are
    /// relative to the working directory, like `--data-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A command run through `sh -c` with each head as a JSON line on its
    /// standard input (e.g. to post it to a transparency log or a ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Archive targets each head is written to, as `witness/<ledger seq>.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archive: Vec<String>,
}

impl WitnessConfig {
    /// Whether any witness is configured.
    pub fn any(&self) -> bool {
        self.file.is_some() || self.command.is_some() || !self.archive.is_empty()
    }
}

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

/// The action a configured policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    /// Delete after the window.
    Delete,
    /// Anonymize after the window.
    Anonymize,
    /// Copy to an archive target, verify the copy, then delete.
    ArchiveThenDelete,
}

impl PolicyAction {
    /// The store-level action.
    pub fn action(self) -> Action {
        match self {
            PolicyAction::Anonymize => Action::Anonymize,
            PolicyAction::Delete | PolicyAction::ArchiveThenDelete => Action::Delete,
        }
    }
}

/// `[[exports]]`: a copy of records Lethe does not control.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Short name.
    pub name: String,
    /// Where the copy goes (free text, e.g. `splunk://siem.internal`).
    pub destination: String,
    /// The copy's own retention, if known (free text, e.g. `90d`).
    #[serde(default)]
    pub retention: Option<String>,
    /// Whether it carries personal fields in clear (`false`: only
    /// ciphertext or plain fields leave Lethe).
    #[serde(default)]
    pub personal_in_clear: bool,
}

/// `[ledger]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// How long ledger entries are kept (default `forever`). When finite,
    /// each real cleanup trims older entries — after a full verify — and
    /// appends a signed anchor that carries everything verification still
    /// needs from them (removed ranges, the latest checkpoints).
    #[serde(default = "default_ledger_retention")]
    pub retention: Window,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            retention: default_ledger_retention(),
        }
    }
}

fn default_ledger_retention() -> Window {
    Window::Forever
}

/// `[integrity]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrityConfig {
    /// Seal a chain into a signed checkpoint once it has this many records
    /// past its last checkpoint (checked after every ingest batch).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or once its last checkpoint is this old and it has new records.
    /// Every ingest run also seals what it wrote when it ends.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Window,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    1_000_000
}

fn default_checkpoint_interval() -> Window {
    Window::Span(600)
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend: `sqlite` (embedded, the default).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Time span of one partition (a multiple of an hour dividing a day, or whole days).
    #[serde(default = "default_partition")]
    pub partition: Window,
    /// Records per ingest transaction.
    #[serde(default = "default_batch")]
    pub ingest_batch: usize,
    /// Compress personal and subject field values (LZ4) before encrypting them.
    #[serde(default = "yes")]
    pub compress_personal: bool,
}

/// `[keys]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Master key file; relative paths are under the data directory. The
    /// environment variable `LETHE_MASTER_KEY` takes precedence.
    #[serde(default = "default_master_key_file")]
    pub master_key_file: String,
}

/// `[tenants]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantsConfig {
    /// Tenants allowed to ingest. Empty: any valid tenant id is accepted.
    #[serde(default)]
    pub allow: Vec<TenantId>,
}

/// `[[streams]]`: one versioned schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name.
    pub name: String,
    /// Schema version.
    pub version: u32,
    /// Classification of records that name none.
    #[serde(default = "default_classification")]
    pub default_classification: Classification,
    /// Field name to class (`"plain"`) or spec (`{ class = "personal", prompt = true }`).
    pub fields: BTreeMap<String, FieldConfig>,
}

/// A field declaration: a bare class, or a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldConfig {
    /// `field = "plain"`.
    Class(FieldClass),
    /// `field = { class = "personal", prompt = true, required = false }`.
    Spec(FieldSpecConfig),
}

/// The table form of a field declaration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpecConfig {
    /// Storage class.
    pub class: FieldClass,
    /// Kept under `metadata_prompt` capture.
    #[serde(default)]
    pub prompt: bool,
    /// Reject records without it.
    #[serde(default)]
    pub required: bool,
}

/// `[[capture]]`: a capture mode for a selector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Tenant, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// Stream (`name` or `name:version`), or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Scope, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Classification, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// What to store.
    pub mode: CaptureMode,
}

/// `[retention]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Policy applied where no `[[retention.policy]]` selects a record.
    #[serde(default)]
    pub default: DefaultPolicyConfig,
    /// Selector-based policies; most specific wins.
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
}

/// `[retention.default]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultPolicyConfig {
    /// Whether the default policy runs at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long records are kept.
    #[serde(default = "default_window")]
    pub window: Window,
    /// What happens after the window.
    #[serde(default = "default_action")]
    pub action: PolicyAction,
    /// `archive_then_delete`: the target (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// `archive_then_delete`: how long archived records are kept, from their event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_window: Option<Window>,
}

/// `[[retention.policy]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A name for receipts and tables; defaults to `policy-<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tenant, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// Stream (`name` or `name:version`), or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Scope, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Classification, or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Disabled policies still win selection (so they can switch retention off
    /// for what they select) but never remove anything.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long records are kept (required unless the policy is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// What happens after the window (required unless the policy is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<PolicyAction>,
    /// `archive_then_delete`: the target (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// `archive_then_delete`: how long archived records are kept, from their event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_window: Option<Window>,
}

impl PolicyConfig {
    /// The window (a disabled policy without one keeps forever).
    pub fn window(&self) -> Window {
        self.window.unwrap_or(Window::Forever)
    }

    /// The action (a disabled policy without one names `delete`, which it never does).
    pub fn action(&self) -> PolicyAction {
        self.action.unwrap_or(PolicyAction::Delete)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: default_backend(),
            partition: default_partition(),
            ingest_batch: default_batch(),
            compress_personal: true,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            master_key_file: default_master_key_file(),
        }
    }
}

impl Default for DefaultPolicyConfig {
    fn default() -> Self {
        DefaultPolicyConfig {
            enabled: true,
            window: default_window(),
            action: default_action(),
            archive: None,
            archive_window: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_backend() -> String {
    "sqlite".into()
}
fn default_partition() -> Window {
    Window::Span(86_400)
}
fn default_batch() -> usize {
    8192
}
fn default_master_key_file() -> String {
    "master.key".into()
}
fn default_classification() -> Classification {
    Classification::Internal
}
fn default_window() -> Window {
    Window::Span(180 * 86_400)
}
fn default_action() -> PolicyAction {
    PolicyAction::Anonymize
}
fn default_restore_window() -> Window {
    Window::Span(30 * 86_400)
}

fn default_object_max_mb() -> u64 {
    256
}
fn default_zstd_level() -> i32 {
    // Fast level -3 (literals still Huffman-coded): most of an archive line
    // is base64 ciphertext, where match finding finds nothing; against
    // level 1 it archives ~11% faster for objects ~1% larger, and level 3
    // cost 22% more time for 0.3% smaller objects (docs/benchmarks.md).
    -3
}
fn default_multipart_above_kb() -> u64 {
    16 * 1024
}
fn default_retries() -> usize {
    3
}

/// A policy's archive settings in evaluation form, or why they are wrong
/// (field name, message).
fn archive_rule(
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

/// The built-in streams: `audit:1` and `requests:1`.
pub fn default_streams() -> Vec<StreamConfig> {
    let f = |pairs: &[(&str, FieldConfig)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let c = FieldConfig::Class;
    let prompt = FieldConfig::Spec(FieldSpecConfig {
        class: FieldClass::Personal,
        prompt: true,
        required: false,
    });
    vec![
        StreamConfig {
            name: "audit".into(),
            version: 1,
            default_classification: Classification::Internal,
            fields: f(&[
                (
                    "action",
                    FieldConfig::Spec(FieldSpecConfig {
                        class: FieldClass::Plain,
                        prompt: false,
                        required: true,
                    }),
                ),
                ("outcome", c(FieldClass::Plain)),
                ("resource", c(FieldClass::Plain)),
                ("region", c(FieldClass::Plain)),
                ("latency_ms", c(FieldClass::Plain)),
                ("actor_email", c(FieldClass::Subject)),
                ("ip", c(FieldClass::Subject)),
                ("user_agent", c(FieldClass::Personal)),
                ("details", c(FieldClass::Personal)),
            ]),
        },
        StreamConfig {
            name: "requests".into(),
            version: 1,
            default_classification: Classification::Confidential,
            fields: f(&[
                ("model", c(FieldClass::Plain)),
                ("status", c(FieldClass::Plain)),
                ("input_tokens", c(FieldClass::Plain)),
                ("output_tokens", c(FieldClass::Plain)),
                ("latency_ms", c(FieldClass::Plain)),
                ("region", c(FieldClass::Plain)),
                ("user_email", c(FieldClass::Subject)),
                ("ip", c(FieldClass::Subject)),
                ("prompt", prompt),
                ("response", c(FieldClass::Personal)),
            ]),
        },
    ]
}

/// Where a configuration came from, for error messages.
pub struct Source<'a> {
    /// File name, or `built-in defaults`.
    pub name: &'a str,
    /// The TOML text (empty for built-in defaults).
    pub text: &'a str,
}

/// Parses a configuration: the base file, then `[profiles.<profile>]` merged
/// over it, then `LETHE_<PATH>` overrides from `env` (path segments separated by
/// `__`, e.g. `LETHE_RETENTION__DEFAULT__WINDOW=90d`). Unknown keys are errors
/// naming their path.
pub fn load(source: Source<'_>, profile: Option<&str>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let name = source.name.to_string();
    let mut root: toml::Table = source.text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        source_name: name.clone(),
        message: e.to_string(),
    })?;
    let profiles = root.remove("profiles");
    if let Some(p) = profile {
        let table = profiles.as_ref().and_then(|v| v.as_table());
        let chosen = table.and_then(|t| t.get(p)).and_then(|v| v.as_table()).ok_or_else(|| {
            let names: Vec<_> = table.map(|t| t.keys().cloned().collect()).unwrap_or_default();
            ConfigError::UnknownProfile(
                p.to_string(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            )
        })?;
        merge(&mut root, chosen.clone());
    }
    for (k, v) in env {
        apply_env(&mut root, k, v)?;
    }
    let de = toml::Value::Table(root);
    let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
        source_name: name.clone(),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    cfg.validate().map_err(|(path, message)| ConfigError::Invalid {
        source_name: name,
        path,
        message,
    })?;
    Ok(cfg)
}

/// Environment variables that are options of the binary, not configuration paths.
pub const RESERVED_ENV: &[&str] = &[
    "LETHE_DATA_DIR",
    "LETHE_CONFIG",
    "LETHE_PROFILE",
    "LETHE_MASTER_KEY",
    "LETHE_LOG",
];

/// The `LETHE_…` configuration overrides among `vars` (reserved names and
/// test hooks excluded).
pub fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = vars
        .filter(|(k, _)| {
            k.starts_with("LETHE_") && !RESERVED_ENV.contains(&k.as_str()) && !k.starts_with("LETHE_TEST_")
        })
        .collect();
    v.sort();
    v
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn apply_env(root: &mut toml::Table, key: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = key["LETHE_".len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Env(key.into(), "empty path segment".into()));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut t = root;
    for seg in &path[..path.len() - 1] {
        let entry = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Env(key.into(), format!("`{seg}` is not a table")))?;
    }
    t.insert(path[path.len() - 1].clone(), parsed);
    Ok(())
}

impl Config {
    /// Built-in defaults: the two standard streams, `full` capture, and the
    /// 180-day anonymize default.
    pub fn builtin() -> Config {
        load(
            Source {
                name: "built-in defaults",
                text: "",
            },
            None,
            &[],
        )
        .expect("built-in defaults are valid")
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.store.backend != "sqlite" {
            return Err((
                "store.backend".into(),
                format!("unknown backend `{}` (available: sqlite)", self.store.backend),
            ));
        }
        match self.store.partition {
            Window::Span(s) if (s % 86_400 == 0) || (s % 3600 == 0 && 86_400 % s == 0) => {}
            _ => {
                return Err((
                    "store.partition".into(),
                    "must be whole days, or whole hours dividing a day (e.g. `1d`, `6h`)".into(),
                ))
            }
        }
        if self.store.ingest_batch == 0 {
            return Err(("store.ingest_batch".into(), "must be positive".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let id = StreamId::new(&s.name, s.version).map_err(|e| (format!("streams[{i}]"), e.to_string()))?;
            if !seen.insert(id.clone()) {
                return Err((format!("streams[{i}]"), format!("stream `{id}` declared twice")));
            }
            for reserved in crate::record::RESERVED_TOP_LEVEL {
                if s.fields.contains_key(*reserved) {
                    return Err((
                        format!("streams[{i}].fields.{reserved}"),
                        "is a reserved top-level name".into(),
                    ));
                }
            }
        }
        let check_stream = |path: String, st: &Option<String>| -> Result<(), (String, String)> {
            if let Some(st) = st {
                let ok = if st.contains(':') {
                    st.parse::<StreamId>().map(|id| seen.contains(&id)).unwrap_or(false)
                } else {
                    seen.iter().any(|id| &id.name == st)
                };
                if !ok {
                    return Err((path, format!("no declared stream matches `{st}`")));
                }
            }
            Ok(())
        };
        for (i, c) in self.capture.iter().enumerate() {
            check_stream(format!("capture[{i}].stream"), &c.stream)?;
        }
        let targets = self.archive.effective_targets();
        for (name, t) in &targets {
            let path = |k: &str| format!("archive.targets.{name}.{k}");
            match t.kind {
                TargetKind::Local => {
                    if t.path.as_deref().is_none_or(str::is_empty) {
                        return Err((path("path"), "is required for a local target".into()));
                    }
                    for (k, v) in [("bucket", &t.bucket), ("endpoint", &t.endpoint)] {
                        if v.is_some() {
                            return Err((path(k), "is only valid for kind = \"s3\"".into()));
                        }
                    }
                }
                TargetKind::S3 => {
                    if t.bucket.as_deref().is_none_or(str::is_empty) {
                        return Err((path("bucket"), "is required for an s3 target".into()));
                    }
                    if t.path.is_some() {
                        return Err((path("path"), "is only valid for kind = \"local\"".into()));
                    }
                }
            }
        }
        if !(-7..=19).contains(&self.archive.zstd_level) || self.archive.zstd_level == 0 {
            return Err((
                "archive.zstd_level".into(),
                "must be between 1 and 19, or a fast level between -7 and -1".into(),
            ));
        }
        if self.archive.restore_window.micros().is_none_or(|w| w <= 0) {
            return Err((
                "archive.restore_window".into(),
                "must be a finite, positive duration: restored copies always expire".into(),
            ));
        }
        if self.archive.object_max_mb == 0 {
            return Err(("archive.object_max_mb".into(), "must be positive".into()));
        }
        let check_archive = |prefix: String,
                             action: PolicyAction,
                             window: Window,
                             archive: &Option<String>,
                             archive_window: &Option<Window>|
         -> Result<(), (String, String)> {
            let rule =
                archive_rule(action, window, archive, archive_window).map_err(|(k, m)| (format!("{prefix}.{k}"), m))?;
            if let Some(r) = rule {
                if !targets.contains_key(&r.target) {
                    let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                    return Err((
                        format!("{prefix}.archive"),
                        format!("no archive target `{}` (configured: {})", r.target, known.join(", ")),
                    ));
                }
            }
            Ok(())
        };
        let d = &self.retention.default;
        check_archive(
            "retention.default".into(),
            d.action,
            d.window,
            &d.archive,
            &d.archive_window,
        )?;
        for (i, p) in self.retention.policy.iter().enumerate() {
            check_stream(format!("retention.policy[{i}].stream"), &p.stream)?;
            if p.enabled {
                if p.window.is_none() {
                    return Err((
                        format!("retention.policy[{i}].window"),
                        "is required for an enabled policy (e.g. \"30d\" or \"forever\")".into(),
                    ));
                }
                if p.action.is_none() {
                    return Err((
                        format!("retention.policy[{i}].action"),
                        "is required for an enabled policy (delete, anonymize or archive_then_delete)".into(),
                    ));
                }
            }
            check_archive(
                format!("retention.policy[{i}]"),
                p.action(),
                p.window(),
                &p.archive,
                &p.archive_window,
            )?;
        }
        for (i, name) in self.witness.archive.iter().enumerate() {
            if !targets.contains_key(name) {
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                return Err((
                    format!("witness.archive[{i}]"),
                    format!("no archive target `{name}` (configured: {})", known.join(", ")),
                ));
            }
        }
        if self.witness.file.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err(("witness.file".into(), "must be a path".into()));
        }
        Ok(())
    }

    /// The declared stream schemas.
    pub fn schemas(&self) -> Vec<StreamSchema> {
        self.streams
            .iter()
            .map(|s| StreamSchema {
                id: StreamId {
                    name: s.name.clone(),
                    version: s.version,
                },
                default_classification: s.default_classification,
                fields: s
                    .fields
                    .iter()
                    .map(|(k, v)| {
                        let spec = match v {
                            FieldConfig::Class(c) => FieldSpec {
                                class: *c,
                                prompt: false,
                                required: false,
                            },
                            FieldConfig::Spec(s) => FieldSpec {
                                class: s.class,
                                prompt: s.prompt,
                                required: s.required,
                            },
                        };
                        (k.clone(), spec)
                    })
                    .collect(),
            })
            .collect()
    }

    /// The policy book: capture and retention rules in evaluation form.
    pub fn policy_book(&self) -> PolicyBook {
        let sel = |tenant: &Option<TenantId>,
                   stream: &Option<String>,
                   scope: &Option<String>,
                   class: &Option<Classification>| Selector {
            tenant: tenant.clone(),
            stream: stream.clone(),
            scope: scope.clone(),
            classification: *class,
        };
        PolicyBook {
            default: RetentionRule {
                name: "default".into(),
                selector: Selector::default(),
                enabled: self.retention.default.enabled,
                window: self.retention.default.window,
                action: self.retention.default.action.action(),
                archive: self.default_archive_rule(),
            },
            retention: self
                .retention
                .policy
                .iter()
                .enumerate()
                .map(|(i, p)| RetentionRule {
                    name: p.name.clone().unwrap_or_else(|| format!("policy-{}", i + 1)),
                    selector: sel(&p.tenant, &p.stream, &p.scope, &p.classification),
                    enabled: p.enabled,
                    window: p.window(),
                    action: p.action().action(),
                    archive: archive_rule(p.action(), p.window(), &p.archive, &p.archive_window)
                        .ok()
                        .flatten(),
                })
                .collect(),
            capture: self
                .capture
                .iter()
                .map(|c| CaptureRule {
                    selector: sel(&c.tenant, &c.stream, &c.scope, &c.classification),
                    mode: c.mode,
                })
                .collect(),
        }
    }

    fn default_archive_rule(&self) -> Option<ArchiveRule> {
        let d = &self.retention.default;
        archive_rule(d.action, d.window, &d.archive, &d.archive_window)
            .ok()
            .flatten()
    }

    /// The effective configuration as TOML (no secrets are part of it).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source<'_> {
        Source {
            name: "lethe.toml",
            text,
        }
    }

    #[test]
    fn builtin_defaults_declare_audit_and_requests_with_a_180_day_anonymize_default() {
        let c = Config::builtin();
        let names: Vec<_> = c.schemas().iter().map(|s| s.id.to_string()).collect();
        assert_eq!(names, ["audit:1", "requests:1"]);
        assert_eq!(c.retention.default.window, Window::Span(180 * 86_400));
        assert_eq!(c.retention.default.action, PolicyAction::Anonymize);
        assert_eq!(c.keys.master_key_file, "master.key");
        assert_eq!(c.store.partition, Window::Span(86_400));
    }

    #[test]
    fn unknown_keys_are_errors_naming_their_path() {
        let e = load(
            src("[retention]\ndefault = { window = \"30d\", colour = 1 }\n"),
            None,
            &[],
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("retention.default"), "{s}");
        assert!(s.contains("colour"), "{s}");
        let e = load(
            src("[[retention.policy]]\nwindow = \"3x\"\naction = \"delete\"\n"),
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("retention.policy[0].window"), "{e}");
    }

    #[test]
    fn a_disabled_policy_needs_no_window_or_action_and_an_enabled_one_names_what_is_missing() {
        let c = load(
            src("[[retention.policy]]\ntenant = \"acme\"\nenabled = false\n"),
            None,
            &[],
        )
        .unwrap();
        let book = c.policy_book();
        assert!(!book.retention[0].enabled);
        let e = load(
            src("[[retention.policy]]\ntenant = \"acme\"\nwindow = \"1y\"\n"),
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("retention.policy[0].action"), "{e}");
        let e = load(
            src("[[retention.policy]]\ntenant = \"acme\"\naction = \"delete\"\n"),
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("retention.policy[0].window"), "{e}");
    }

    #[test]
    fn witness_archive_targets_must_exist() {
        let e = load(src("[witness]\narchive = [\"nowhere\"]\n"), None, &[]).unwrap_err();
        assert!(e.to_string().contains("witness.archive[0]"), "{e}");
        let c = load(
            src("[witness]\nfile = \"heads.jsonl\"\narchive = [\"local\"]\n"),
            None,
            &[],
        )
        .unwrap();
        assert!(c.witness.any());
    }

    #[test]
    fn profiles_merge_over_the_base_and_env_overrides_win() {
        let text = "[retention.default]\nwindow = \"90d\"\n[profiles.short.retention.default]\nwindow = \"7d\"\n";
        assert_eq!(
            load(src(text), None, &[]).unwrap().retention.default.window,
            Window::Span(90 * 86_400)
        );
        assert_eq!(
            load(src(text), Some("short"), &[]).unwrap().retention.default.window,
            Window::Span(7 * 86_400)
        );
        let env = vec![("LETHE_RETENTION__DEFAULT__WINDOW".to_string(), "1d".to_string())];
        assert_eq!(
            load(src(text), Some("short"), &env).unwrap().retention.default.window,
            Window::Span(86_400)
        );
        let e = load(src(text), Some("nope"), &[]).unwrap_err();
        assert!(e.to_string().contains("short"), "{e}");
        let env = vec![("LETHE_RETENTION__BOGUS".to_string(), "1".to_string())];
        assert!(load(src(text), None, &env).unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn policies_must_name_declared_streams() {
        let e = load(
            src("[[retention.policy]]\nstream = \"nope\"\nwindow = \"1d\"\naction = \"delete\"\n"),
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("retention.policy[0].stream"), "{e}");
    }

    #[test]
    fn the_shipped_sample_config_loads_in_every_profile() {
        let text = include_str!("../../../lethe.toml");
        let base = load(src(text), None, &[]).unwrap();
        assert!(!base.retention.policy.is_empty());
        let root: toml::Table = text.parse().unwrap();
        for name in root["profiles"].as_table().unwrap().keys() {
            load(src(text), Some(name), &[]).unwrap();
        }
    }

    #[test]
    fn archive_settings_are_checked_and_errors_name_the_key() {
        let err = |text: &str| load(src(text), None, &[]).unwrap_err().to_string();
        let policy = |extra: &str| {
            format!(
                "[[retention.policy]]\nstream = \"audit\"\nwindow = \"90d\"\naction = \"archive_then_delete\"\n{extra}"
            )
        };
        let e = err(&policy(""));
        assert!(
            e.contains("retention.policy[0].archive_window") && e.contains("required"),
            "{e}"
        );
        let e = err(&policy("archive_window = \"30d\"\n"));
        assert!(
            e.contains("retention.policy[0].archive_window") && e.contains("shorter"),
            "{e}"
        );
        let e = err(&policy("archive_window = \"365d\"\narchive = \"glacier\"\n"));
        assert!(
            e.contains("retention.policy[0].archive") && e.contains("no archive target `glacier`"),
            "{e}"
        );
        let e = err("[[retention.policy]]\nwindow = \"9d\"\naction = \"delete\"\narchive_window = \"9d\"\n");
        assert!(
            e.contains("retention.policy[0].archive_window") && e.contains("only valid"),
            "{e}"
        );
        let e = err("[archive.targets.s3]\nkind = \"s3\"\n");
        assert!(e.contains("archive.targets.s3.bucket"), "{e}");
        let e = err("[archive]\nzstd_level = 30\n");
        assert!(e.contains("archive.zstd_level"), "{e}");
        let e = err("[archive]\nzstd_level = 0\n");
        assert!(e.contains("archive.zstd_level") && e.contains("fast level"), "{e}");
        let e = err("[archive]\nrestore_window = \"forever\"\n");
        assert!(e.contains("archive.restore_window") && e.contains("finite"), "{e}");
        let e = err("[archive.targets.x]\nkind = \"ftp\"\n");
        assert!(e.contains("archive.targets.x.kind") || e.contains("ftp"), "{e}");

        // A valid one: the rule carries its target and window; the secret never prints.
        let c = load(
            src(&format!(
                "{}[archive.targets.s3]\nkind = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"hunter2\"\n",
                policy("archive_window = \"forever\"\narchive = \"s3\"\n")
            )),
            None,
            &[],
        )
        .unwrap();
        let rule = &c.policy_book().retention[0];
        assert_eq!(rule.action, Action::Delete);
        assert_eq!(rule.action_name(), "archive_then_delete");
        assert_eq!(rule.archive.as_ref().unwrap().target, "s3");
        assert_eq!(rule.archive.as_ref().unwrap().window, Window::Forever);
        assert!(!c.to_toml().contains("hunter2"));
        assert!(
            c.archive.effective_targets().contains_key("local"),
            "the local target is built in"
        );
    }
}
