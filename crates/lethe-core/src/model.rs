//! The vocabulary of Lethe: tenants, streams, field classes, classifications and
//! capture modes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// A tenant id is not a safe identifier.
    #[error("invalid tenant id `{0}`: use 1-63 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit")]
    Tenant(String),
    /// A stream reference is malformed.
    #[error("invalid stream `{0}`: expected `name:version`, e.g. `audit:1`")]
    Stream(String),
    /// An unknown classification.
    #[error("invalid classification `{0}`: expected public, internal, confidential or restricted")]
    Classification(String),
    /// An unknown capture mode.
    #[error("invalid capture mode `{0}`: expected full, metadata_prompt, metadata or none")]
    CaptureMode(String),
}

impl NameError {
    /// What is wrong, without the value: for errors about input that may
    /// hold personal data (an e-mail address typed into the wrong field).
    pub fn rule(&self) -> &'static str {
        match self {
            NameError::Tenant(_) => {
                "not a valid tenant id: use 1-63 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit"
            }
            NameError::Stream(_) => "not a valid stream: expected `name:version`, e.g. `audit:1`",
            NameError::Classification(_) => {
                "not a classification: expected public, internal, confidential or restricted"
            }
            NameError::CaptureMode(_) => "not a capture mode: expected full, metadata_prompt, metadata or none",
        }
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A tenant id: also a path component on disk, so it is restricted to a safe
/// alphabet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Validates and wraps a tenant id.
    pub fn new(s: &str) -> Result<Self, NameError> {
        if is_ident(s) {
            Ok(TenantId(s.to_string()))
        } else {
            Err(NameError::Tenant(s.to_string()))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream and its schema version, written `name:version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Stream name, e.g. `audit`.
    pub name: String,
    /// Schema version, e.g. `1`.
    pub version: u32,
}

impl StreamId {
    /// Builds a stream id from a validated name and a version.
    pub fn new(name: &str, version: u32) -> Result<Self, NameError> {
        if is_ident(name) && version > 0 {
            Ok(StreamId {
                name: name.to_string(),
                version,
            })
        } else {
            Err(NameError::Stream(format!("{name}:{version}")))
        }
    }
}

impl FromStr for StreamId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NameError::Stream(s.to_string());
        let (name, ver) = s.split_once(':').ok_or_else(err)?;
        let version: u32 = ver.parse().map_err(|_| err())?;
        StreamId::new(name, version).map_err(|_| err())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

/// Data label on a record, least to most sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Classification {
    /// May be shown to anyone.
    Public,
    /// Internal to the organisation (the default).
    Internal,
    /// Confidential business data.
    Confidential,
    /// Restricted: the most sensitive.
    Restricted,
}

impl Classification {
    /// All classifications, in order.
    pub const ALL: [Classification; 4] = [
        Classification::Public,
        Classification::Internal,
        Classification::Confidential,
        Classification::Restricted,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
        }
    }

    /// A stable small integer for storage.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The inverse of [`Classification::code`].
    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(c as usize).copied()
    }
}

impl FromStr for Classification {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| NameError::Classification(s.to_string()))
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is stored at ingest for a scope and classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureMode {
    /// Every declared field.
    Full,
    /// Plain and subject fields plus the personal fields tagged `prompt`.
    MetadataPrompt,
    /// Plain and subject fields only: no personal body.
    Metadata,
    /// Nothing is stored; the record is only counted.
    None,
}

impl CaptureMode {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::Full => "full",
            CaptureMode::MetadataPrompt => "metadata_prompt",
            CaptureMode::Metadata => "metadata",
            CaptureMode::None => "none",
        }
    }

    /// Whether a field of this class (and prompt tag) is written under this mode.
    pub fn keeps(self, class: FieldClass, is_prompt: bool) -> bool {
        match (self, class) {
            (CaptureMode::None, _) => false,
            (_, FieldClass::Plain | FieldClass::Subject) => true,
            (CaptureMode::Full, FieldClass::Personal) => true,
            (CaptureMode::MetadataPrompt, FieldClass::Personal) => is_prompt,
            (CaptureMode::Metadata, FieldClass::Personal) => false,
        }
    }
}

impl FromStr for CaptureMode {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(CaptureMode::Full),
            "metadata_prompt" => Ok(CaptureMode::MetadataPrompt),
            "metadata" => Ok(CaptureMode::Metadata),
            "none" => Ok(CaptureMode::None),
            _ => Err(NameError::CaptureMode(s.to_string())),
        }
    }
}

/// How a field of a stream is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldClass {
    /// Identifies the data subject: encrypted under the subject's key.
    Subject,
    /// Personal content: encrypted under the subject's key.
    Personal,
    /// Non-personal: stored in clear and queryable.
    Plain,
}

impl FieldClass {
    /// Whether values of this class are encrypted at rest.
    pub fn is_encrypted(self) -> bool {
        !matches!(self, FieldClass::Plain)
    }
}

/// One declared field of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Storage class.
    pub class: FieldClass,
    /// Kept under `metadata_prompt` capture (only meaningful for personal fields).
    pub prompt: bool,
    /// Ingest rejects a record without this field.
    pub required: bool,
}

/// A versioned stream schema: its fields and their classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSchema {
    /// Which stream this is.
    pub id: StreamId,
    /// Classification given to records that carry none.
    pub default_classification: Classification,
    /// Declared fields by name.
    pub fields: BTreeMap<String, FieldSpec>,
}

macro_rules! serde_via_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

impl FromStr for TenantId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::new(s)
    }
}

impl fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_via_str!(TenantId, StreamId, Classification, CaptureMode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_must_be_safe_path_components() {
        assert!(TenantId::new("acme-corp_2").is_ok());
        for bad in ["", "../etc", "Acme", "a/b", "-x", &"x".repeat(64)] {
            assert!(TenantId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_ids_round_trip_as_name_colon_version() {
        let s: StreamId = "requests:2".parse().unwrap();
        assert_eq!((s.name.as_str(), s.version), ("requests", 2));
        assert_eq!(s.to_string(), "requests:2");
        assert!("requests".parse::<StreamId>().is_err());
        assert!("requests:0".parse::<StreamId>().is_err());
    }

    #[test]
    fn capture_modes_keep_what_they_promise() {
        use FieldClass::*;
        assert!(CaptureMode::Full.keeps(Personal, false));
        assert!(CaptureMode::MetadataPrompt.keeps(Personal, true));
        assert!(!CaptureMode::MetadataPrompt.keeps(Personal, false));
        assert!(!CaptureMode::Metadata.keeps(Personal, true));
        assert!(CaptureMode::Metadata.keeps(Subject, false));
        assert!(!CaptureMode::None.keeps(Plain, false));
    }
}
