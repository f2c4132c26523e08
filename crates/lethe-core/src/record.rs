//! The record format: parsing and validating an NDJSON line against its stream
//! schema, the encrypted body encoding, and the JSON form `lethe logs --json`
//! prints (which `lethe ingest` accepts back).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Classification, FieldClass, StreamId, StreamSchema, TenantId};

/// Top-level keys of the record format; everything else goes under `fields`.
pub const RESERVED_TOP_LEVEL: &[&str] = &[
    "id",
    "tenant",
    "stream",
    "scope",
    "classification",
    "ts",
    "received",
    "subject",
    "fields",
    "anonymized",
    "erased",
];

/// Name under which the top-level subject id is kept in the encrypted body.
pub const SUBJECT_FIELD: &str = "subject";

/// Why a record was refused; `field` names the offending key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("field `{field}`: {message}")]
pub struct RecordError {
    /// Dotted path of the offending field (`fields.prompt`, `ts`), or `(line)`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl RecordError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RecordError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(default, borrow)]
    scope: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    classification: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    ts: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    received: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    subject: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    fields: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(default)]
    #[allow(dead_code)]
    anonymized: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    erased: Option<bool>,
}

/// A parsed and validated incoming record; field values are still raw JSON.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// Client-chosen id, if any.
    pub id: Option<[u8; 16]>,
    /// Tenant.
    pub tenant: TenantId,
    /// Resolved stream (a bare name resolves to its newest declared version).
    pub stream: StreamId,
    /// Scope (`default` when absent).
    pub scope: String,
    /// Classification (the stream's default when absent).
    pub classification: Classification,
    /// Event time in µs since the epoch (`None`: use the received time).
    pub ts_us: Option<i64>,
    /// The data subject's id.
    pub subject: Option<Cow<'a, str>>,
    /// Declared fields with their class, prompt tag and raw JSON value.
    pub fields: Vec<(Cow<'a, str>, FieldClass, bool, &'a RawValue)>,
}

/// Parses one line and validates it against the declared schemas.
pub fn parse<'a>(line: &'a str, schemas: &[StreamSchema]) -> Result<Incoming<'a>, RecordError> {
    // A byte-order mark (Windows tools write one at the start of a file) is not part of the record.
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    // Fast path without path tracking; on failure, parse again with it so the
    // error names the field.
    let w: Wire<'a> = match serde_json::from_str(line) {
        Ok(w) => w,
        Err(_) => return Err(explain(line)),
    };
    validate(w, schemas)
}

fn explain(line: &str) -> RecordError {
    let mut de = serde_json::Deserializer::from_str(line);
    let r: Result<Wire<'_>, _> = serde_path_to_error::deserialize(&mut de);
    let e = match r {
        Ok(_) => {
            return match de.end() {
                Ok(()) => RecordError::new("(line)", "invalid record"),
                Err(e) => RecordError::new(
                    "(line)",
                    format!("unexpected characters after the record at column {}", e.column()),
                ),
            }
        }
        Err(e) => e,
    };
    let path = e.path().to_string();
    let inner = e.into_inner();
    let column = inner.column();
    match inner.classify() {
        // Not JSON at all: the line, not a field, is at fault.
        serde_json::error::Category::Syntax => RecordError::new(
            "(line)",
            format!(
                "not valid JSON: {} at column {column}",
                strip_position(&inner.to_string())
            ),
        ),
        serde_json::error::Category::Eof => RecordError::new(
            "(line)",
            "the line ends inside a JSON value: it is truncated or not one record per line",
        ),
        _ => {
            let msg = strip_position(&inner.to_string());
            // A required field that is absent is named as that field.
            if let Some(rest) = msg.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or("");
                let field = if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                return RecordError::new(field, "required, and missing");
            }
            if path == "." {
                match msg.strip_prefix("unknown field `") {
                    Some(rest) => RecordError::new(rest.split('`').next().unwrap_or(""), "unknown top-level field"),
                    None => RecordError::new("(line)", without_values(&msg)),
                }
            } else {
                RecordError::new(path, without_values(&msg))
            }
        }
    }
}

/// A serde message with the offending value taken out: input may hold
/// personal data (an e-mail address in the wrong field) and error messages
/// end up in terminals and logs. `invalid type: string "…", expected a
/// boolean` becomes `wrong type: a string where a boolean is expected`.
fn without_values(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let given = rest.split([' ', ',']).next().unwrap_or("value");
            let expected = rest
                .rsplit_once(", expected ")
                .map(|(_, e)| e)
                .unwrap_or("another value");
            let what = if prefix.starts_with("invalid type") {
                "wrong type"
            } else {
                "invalid value"
            };
            return format!("{what}: a {given} where {expected} is expected");
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let expected = rest
            .split_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("another value");
        return format!("unknown value, expected {expected}");
    }
    msg.to_string()
}

fn validate<'a>(w: Wire<'a>, schemas: &[StreamSchema]) -> Result<Incoming<'a>, RecordError> {
    let tenant = TenantId::new(&w.tenant).map_err(|e| RecordError::new("tenant", e.rule()))?;
    let schema = resolve_stream(&w.stream, schemas)?;
    let scope = match w.scope {
        None => "default".to_string(),
        Some(s) if valid_scope(&s) => s.into_owned(),
        Some(_) => return Err(RecordError::new("scope", "must be 1-200 printable characters")),
    };
    let classification = match w.classification {
        None => schema.default_classification,
        Some(c) => c
            .parse()
            .map_err(|e: crate::model::NameError| RecordError::new("classification", e.rule()))?,
    };
    let id = match w.id {
        None => None,
        Some(s) => Some(
            *uuid::Uuid::parse_str(&s)
                .map_err(|_| RecordError::new("id", "must be a UUID"))?
                .as_bytes(),
        ),
    };
    let ts_us = match w.ts {
        None => None,
        Some(s) => Some(parse_ts(&s).ok_or_else(|| RecordError::new("ts", "must be an RFC 3339 timestamp"))?),
    };
    let subject = match w.subject {
        Some(s) if s.is_empty() => return Err(RecordError::new("subject", "must not be empty")),
        s => s,
    };
    let mut fields = Vec::new();
    for (name, raw) in w.fields.unwrap_or_default() {
        let spec = schema.fields.get(name.as_ref()).ok_or_else(|| {
            RecordError::new(
                format!("fields.{name}"),
                format!("not declared in stream `{}`", schema.id),
            )
        })?;
        if raw.get() == "null" {
            continue;
        }
        check_value(raw.get()).map_err(|m| RecordError::new(format!("fields.{name}"), m))?;
        fields.push((name, spec.class, spec.prompt, raw));
    }
    for (name, spec) in &schema.fields {
        if spec.required && !fields.iter().any(|(n, ..)| n == name) {
            return Err(RecordError::new(format!("fields.{name}"), "is required"));
        }
    }
    Ok(Incoming {
        id,
        tenant,
        stream: schema.id.clone(),
        scope,
        classification,
        ts_us,
        subject,
        fields,
    })
}

/// Deepest nesting of arrays and objects accepted inside one field value.
pub const MAX_DEPTH: usize = 64;

/// Whether a field value (valid JSON text) reads back exactly as it was
/// accepted: nesting at most [`MAX_DEPTH`] levels, integers within 64
/// bits, other numbers finite and exactly what a 64-bit float holds (no
/// digits it would drop), strings without lone UTF-16 surrogate escapes.
/// What fails would be stored and then be unreadable or come back changed.
pub fn check_value(raw: &str) -> Result<(), &'static str> {
    let b = raw.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err("nested more than 64 levels deep");
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => i = check_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                check_number(&raw[start..i])?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Checks a string's escapes from just after its opening quote; returns
/// the index after its closing quote.
fn check_string(b: &[u8], mut i: usize) -> Result<usize, &'static str> {
    let hex4 = |at: usize| -> Option<u16> {
        let s = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
        u16::from_str_radix(s, 16).ok()
    };
    while i < b.len() {
        // Most of a long text has neither: skip to the next quote or escape.
        match memchr::memchr2(b'"', b'\\', &b[i..]) {
            Some(k) => i += k,
            None => return Ok(b.len()),
        }
        match b[i] {
            b'"' => return Ok(i + 1),
            b'\\' => {
                if b.get(i + 1) == Some(&b'u') {
                    let u = hex4(i + 2).ok_or("malformed \\u escape")?;
                    i += 6;
                    if (0xD800..0xDC00).contains(&u) {
                        let low = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(i + 2))
                            .flatten();
                        match low {
                            Some(l) if (0xDC00..0xE000).contains(&l) => i += 6,
                            _ => return Err("a string holds a lone UTF-16 surrogate escape (not a character)"),
                        }
                    } else if (0xDC00..0xE000).contains(&u) {
                        return Err("a string holds a lone UTF-16 surrogate escape (not a character)");
                    }
                } else {
                    i += 2;
                }
            }
            _ => i += 1,
        }
    }
    Ok(i)
}

/// Checks one JSON number token.
fn check_number(s: &str) -> Result<(), &'static str> {
    if !s.contains(['.', 'e', 'E']) {
        if s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok() {
            return Ok(());
        }
        return Err("an integer outside the 64-bit range: send it as a string to keep every digit");
    }
    // Fast path: at most 15 significant digits and a moderate exponent
    // always survive a 64-bit float exactly (15 = f64's decimal digits).
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(k) => (&s[..k], s[k + 1..].parse::<i32>().ok()),
        None => (s, Some(0)),
    };
    let digits = mant
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|d| *d == b'0')
        .count();
    if digits <= 15 && exp.is_some_and(|e| e.abs() < 280) && mant.len() < 300 {
        return Ok(());
    }
    let f: f64 = s.parse().map_err(|_| "a malformed number")?;
    if !f.is_finite() {
        return Err("a number too large to store: send it as a string");
    }
    if normalized(s) != normalized(&format!("{f:e}")) {
        return Err("a number with more digits than a 64-bit float keeps: send it as a string to keep every digit");
    }
    Ok(())
}

/// A decimal number as (negative, significant digits, exponent) with value
/// `0.digits × 10^exponent`; every zero is the same.
fn normalized(s: &str) -> (bool, String, i64) {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(k) => (&s[..k], s[k + 1..].parse::<i64>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let sig = digits.trim_start_matches('0').trim_end_matches('0').to_string();
    if sig.is_empty() {
        return (false, String::new(), 0);
    }
    (neg, sig, exp + int.len() as i64 - lead as i64)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn valid_scope(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && !s.chars().any(|c| c.is_control())
}

fn resolve_stream<'s>(s: &str, schemas: &'s [StreamSchema]) -> Result<&'s StreamSchema, RecordError> {
    let found = if s.contains(':') {
        let id: StreamId = s
            .parse()
            .map_err(|e: crate::model::NameError| RecordError::new("stream", e.rule()))?;
        schemas.iter().find(|x| x.id == id)
    } else {
        schemas.iter().filter(|x| x.id.name == s).max_by_key(|x| x.id.version)
    };
    found.ok_or_else(|| RecordError::new("stream", "no such stream is declared in the configuration"))
}

/// Parses an RFC 3339 timestamp to µs since the epoch.
pub fn parse_ts(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_micros())
}

/// Formats µs since the epoch as RFC 3339 UTC with microseconds when needed.
pub fn format_ts(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| us.to_string())
}

/// The encrypted body of a record: `(field name, nonce ‖ ciphertext ‖ tag)`
/// pairs, encoded as `1 ‖ n:u16 ‖ (len:u8 ‖ name ‖ len:u32 ‖ blob)*`.
pub mod body {
    /// Appends the encoding of `fields` to `out`.
    pub fn encode<'a>(fields: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>, out: &mut Vec<u8>) {
        out.push(1);
        out.extend_from_slice(&(fields.len() as u16).to_le_bytes());
        for (name, blob) in fields {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            out.extend_from_slice(blob);
        }
    }

    /// Decodes a body; `None` when it is malformed.
    pub fn decode(b: &[u8]) -> Option<Vec<(&str, &[u8])>> {
        let (&ver, rest) = b.split_first()?;
        if ver != 1 || rest.len() < 2 {
            return None;
        }
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let mut p = &rest[2..];
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (&nl, r) = p.split_first()?;
            let name = std::str::from_utf8(r.get(..nl as usize)?).ok()?;
            let r = &r[nl as usize..];
            let len = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
            let blob = r.get(4..4 + len)?;
            out.push((name, blob));
            p = &r[4 + len..];
        }
        p.is_empty().then_some(out)
    }
}

/// The plaintext form of an encrypted field value: a tag byte, then the
/// value raw (`0`) or LZ4-compressed (`1 ‖ original length: u32 LE ‖ LZ4 block`).
/// Compression happens before encryption (ciphertext does not compress) and
/// only where it saves bytes; the tag is inside the ciphertext.
///
/// LZ4 rather than zstd: on ~500-byte prompt and response values zstd's
/// per-frame cost made ingest slower overall, while LZ4 made it faster
/// (less to write) — see docs/benchmarks.md.
pub mod value {
    use std::borrow::Cow;

    const RAW: u8 = 0;
    const LZ4: u8 = 1;
    /// Values shorter than this are never compressed.
    const MIN_LEN: usize = 64;

    /// Packs values for encryption.
    pub struct Packer {
        compress: bool,
    }

    impl Packer {
        /// A packer that compresses when `compress`.
        pub fn new(compress: bool) -> Self {
            Packer { compress }
        }

        /// Appends the packed form of `v` to `out`.
        pub fn pack(&mut self, v: &[u8], out: &mut Vec<u8>) {
            if self.compress && v.len() >= MIN_LEN {
                let start = out.len();
                out.push(LZ4);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                let block = out.len();
                out.resize(block + lz4_flex::block::get_maximum_output_size(v.len()), 0);
                if let Ok(n) = lz4_flex::block::compress_into(v, &mut out[block..]) {
                    if block + n < start + 1 + v.len() {
                        out.truncate(block + n);
                        return;
                    }
                }
                out.truncate(start);
            }
            out.push(RAW);
            out.extend_from_slice(v);
        }
    }

    /// The value inside a packed plaintext.
    pub fn unpack(b: &[u8]) -> Result<Cow<'_, [u8]>, String> {
        match b.split_first() {
            Some((&RAW, rest)) => Ok(Cow::Borrowed(rest)),
            Some((&LZ4, rest)) if rest.len() >= 4 => {
                let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                lz4_flex::block::decompress(&rest[4..], len)
                    .map(Cow::Owned)
                    .map_err(|e| format!("corrupt compressed value: {e}"))
            }
            _ => Err("unknown value encoding".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn schemas() -> Vec<StreamSchema> {
        Config::builtin().schemas()
    }

    #[test]
    fn a_missing_required_field_is_named_as_that_field() {
        let e = parse(r#"{"tenant":"acme","fields":{}}"#, &schemas()).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("stream", "required, and missing")
        );
    }

    #[test]
    fn a_full_record_parses_with_defaults_applied() {
        let line = r#"{"tenant":"acme","stream":"requests","subject":"u1","ts":"2026-01-02T03:04:05Z","fields":{"model":"m","prompt":"hi","user_email":"a@b"}}"#;
        let r = parse(line, &schemas()).unwrap();
        assert_eq!(r.stream.to_string(), "requests:1");
        assert_eq!(r.scope, "default");
        assert_eq!(r.classification, Classification::Confidential);
        assert_eq!(r.ts_us, parse_ts("2026-01-02T03:04:05Z"));
        assert_eq!(r.fields.len(), 3);
        assert!(r
            .fields
            .iter()
            .any(|(n, c, p, _)| n == "prompt" && *c == FieldClass::Personal && *p));
    }

    #[test]
    fn bad_records_name_the_offending_field() {
        let s = schemas();
        let cases = [
            (
                r#"{"tenant":"acme","stream":"audit:1","fields":{"action":"x","colour":1}}"#,
                "fields.colour",
            ),
            (r#"{"tenant":"acme","stream":"audit:1","fields":{}}"#, "fields.action"),
            (
                r#"{"tenant":"Acme!","stream":"audit:1","fields":{"action":"x"}}"#,
                "tenant",
            ),
            (
                r#"{"tenant":"acme","stream":"nope:1","fields":{"action":"x"}}"#,
                "stream",
            ),
            (
                r#"{"tenant":"acme","stream":"audit:1","ts":"yesterday","fields":{"action":"x"}}"#,
                "ts",
            ),
            (
                r#"{"tenant":"acme","stream":"audit:1","ts":5,"fields":{"action":"x"}}"#,
                "ts",
            ),
            (
                r#"{"tenant":"acme","stream":"audit:1","classification":"secret","fields":{"action":"x"}}"#,
                "classification",
            ),
            (
                r#"{"tenant":"acme","stream":"audit:1","id":"nope","fields":{"action":"x"}}"#,
                "id",
            ),
            (
                r#"{"tenant":"acme","stream":"audit:1","extra":1,"fields":{"action":"x"}}"#,
                "extra",
            ),
            (r#"{"stream":"audit:1","fields":{"action":"x"}}"#, "tenant"),
            (
                r#"{"tenant":"acme","stream":"audit:1","fields":{"action":"x"}} trailing"#,
                "(line)",
            ),
            (r#"not json"#, "(line)"),
        ];
        for (line, field) in cases {
            let e = parse(line, &s).unwrap_err();
            assert_eq!(e.field, field, "{line}: {e}");
        }
    }

    #[test]
    fn values_that_would_not_read_back_are_refused_naming_the_field() {
        let s = schemas();
        let line =
            |v: &str| format!(r#"{{"tenant":"acme","stream":"audit:1","fields":{{"action":"x","details":{v}}}}}"#);
        let deep = format!("{}1{}", "[".repeat(65), "]".repeat(65));
        for bad in [
            "1e400",
            "-1e400",
            r#""\ud800""#,
            r#""a\udc00b""#,
            r#"["\ud83d x"]"#,
            "123456789012345678901234567890",
            "3.141592653589793238462643",
            deep.as_str(),
        ] {
            let e = parse(&line(bad), &s).unwrap_err();
            assert_eq!(e.field, "fields.details", "{bad}: {e}");
        }
        let ok_deep = format!("{}1{}", "[".repeat(64), "]".repeat(64));
        for good in [
            "0",
            "-0.0",
            "0.1",
            "12.345",
            "1.5e3",
            "1E-7",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "2.5e-308",
            r#""\ud83d\ude00 \n \u00e9""#,
            r#"{"a":[1,{"b":"c\"d"}]}"#,
            ok_deep.as_str(),
        ] {
            assert!(parse(&line(good), &s).is_ok(), "{good}");
        }
    }

    #[test]
    fn errors_never_repeat_the_rejected_value() {
        let s = schemas();
        let email = "jane.doe@example.com";
        for line in [
            format!(r#"{{"tenant":"acme","stream":"audit:1","classification":"{email}","fields":{{"action":"x"}}}}"#),
            format!(r#"{{"tenant":"{email}","stream":"audit:1","fields":{{"action":"x"}}}}"#),
            format!(r#"{{"tenant":"acme","stream":"{email}","fields":{{"action":"x"}}}}"#),
            format!(r#"{{"tenant":"acme","stream":"audit:1","anonymized":"{email}","fields":{{"action":"x"}}}}"#),
            format!(r#"{{"tenant":"acme","stream":"audit:1","ts":"{email}","fields":{{"action":"x"}}}}"#),
        ] {
            let e = parse(&line, &s).unwrap_err();
            assert!(!e.to_string().contains("jane"), "{e}");
        }
    }

    #[test]
    fn broken_lines_are_blamed_on_the_line_with_a_clear_reason() {
        let s = schemas();
        let e = parse("{not json", &s).unwrap_err();
        assert_eq!(e.field, "(line)");
        assert!(e.message.starts_with("not valid JSON"), "{e}");
        let e = parse(r#"{"tenant":"acme","stream":"audit:1","fields":{"action":"lo"#, &s).unwrap_err();
        assert_eq!(e.field, "(line)");
        assert!(e.message.contains("truncated"), "{e}");
    }

    #[test]
    fn bodies_round_trip_and_reject_garbage() {
        let mut out = Vec::new();
        let fields = [("a", b"xyz".as_slice()), ("prompt", b"".as_slice())];
        body::encode(fields.iter().map(|(a, b)| (*a, *b)), &mut out);
        assert_eq!(body::decode(&out).unwrap(), fields.to_vec());
        assert!(body::decode(&out[..out.len() - 1]).is_none());
        assert!(body::decode(&[2, 0, 0]).is_none());
    }

    #[test]
    fn packed_values_round_trip_and_long_text_shrinks() {
        let mut p = value::Packer::new(true);
        let text = "the customer asked for a refund of the invoice and the manager approved the refund ".repeat(8);
        for v in [b"".as_slice(), b"short", text.as_bytes()] {
            let mut out = Vec::new();
            p.pack(v, &mut out);
            assert_eq!(value::unpack(&out).unwrap().as_ref(), v);
        }
        let mut out = Vec::new();
        p.pack(text.as_bytes(), &mut out);
        assert!(out.len() * 2 < text.len(), "{} -> {}", text.len(), out.len());
        let mut raw = Vec::new();
        value::Packer::new(false).pack(text.as_bytes(), &mut raw);
        assert_eq!(raw.len(), text.len() + 1);
        assert!(value::unpack(&[9, 1, 2]).is_err());
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        let us = parse_ts("2026-01-02T03:04:05.123456+01:00").unwrap();
        assert_eq!(format_ts(us), "2026-01-02T02:04:05.123456Z");
    }
}
