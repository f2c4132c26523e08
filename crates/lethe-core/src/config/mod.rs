//! `lethe.toml`: named profiles, `LETHE_…` environment overrides, strict keys,
//! and the effective configuration the rest of the program runs on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Window;
use crate::model::{CaptureMode, Classification, FieldClass, FieldSpec, StreamId, StreamSchema, TenantId};
use crate::policy::{Action, ArchiveRule, CaptureRule, PolicyBook, RetentionRule, Selector};

mod archive;
mod load;
mod schedule;
mod server;
mod validate;

pub use archive::{archive_rule, ArchiveConfig, ArchiveTargetConfig, TargetKind};
pub use load::*;
pub use schedule::{parse_entry as parse_schedule_entry, ScheduleConfig};
pub use server::ServerConfig;

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
    /// How `lethe serve` listens.
    #[serde(default)]
    pub server: ServerConfig,
    /// When `lethe serve` sweeps and verifies by itself.
    #[serde(default)]
    pub schedule: ScheduleConfig,
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

pub(super) fn default_ledger_retention() -> Window {
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

pub(super) fn default_checkpoint_every() -> u64 {
    1_000_000
}

pub(super) fn default_checkpoint_interval() -> Window {
    Window::Span(600)
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend: `sqlite` (embedded, the default) or `postgres` (a shared
    /// database several `lethe serve` nodes can work on).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// PostgreSQL connection string (`postgres://user@host:5432/db`, or
    /// `key=value` pairs); required with `backend = "postgres"`. Usually set
    /// through `LETHE_STORE__URL` so a password stays out of the file.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL schema holding the store's tables (created when missing).
    #[serde(default = "default_pg_schema")]
    pub schema: String,
    /// PostgreSQL connections each process opens at most for its work (the
    /// job lock and the leader election hold one more each).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Certificates (PEM) trusted for the PostgreSQL server's, beside the
    /// system's, when `url` asks for TLS with `sslmode=require` (which
    /// Lethe verifies as libpq's `verify-full`: chain and host name).
    /// Relative paths are under the data directory.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Time span of one partition (a multiple of an hour dividing a day, or whole days).
    #[serde(default = "default_partition")]
    pub partition: Window,
    /// Records per ingest transaction.
    #[serde(default = "default_batch")]
    pub ingest_batch: usize,
    /// Compress personal and subject field values (LZ4) before encrypting them.
    #[serde(default = "yes")]
    pub compress_personal: bool,
    /// Group commit: batches that concurrent writers of one process submit
    /// while an append is in progress are appended together, one durable
    /// write for all, up to this many records (0: every batch alone).
    #[serde(default = "default_group_commit_records")]
    pub group_commit_records: usize,
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
            url: None,
            schema: default_pg_schema(),
            pool_size: default_pool_size(),
            ca_file: None,
            partition: default_partition(),
            ingest_batch: default_batch(),
            compress_personal: true,
            group_commit_records: default_group_commit_records(),
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

pub(super) fn yes() -> bool {
    true
}
pub(super) fn default_backend() -> String {
    "sqlite".into()
}
pub(super) fn default_pg_schema() -> String {
    "lethe".into()
}
pub(super) fn default_pool_size() -> usize {
    16
}
pub(super) fn default_partition() -> Window {
    Window::Span(86_400)
}
pub(super) fn default_batch() -> usize {
    8192
}
pub(super) fn default_group_commit_records() -> usize {
    32_768
}
pub(super) fn default_master_key_file() -> String {
    "master.key".into()
}
pub(super) fn default_classification() -> Classification {
    Classification::Internal
}
pub(super) fn default_window() -> Window {
    Window::Span(180 * 86_400)
}
pub(super) fn default_action() -> PolicyAction {
    PolicyAction::Anonymize
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
            overrides: Vec::new(),
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
mod tests;
