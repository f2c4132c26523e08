//! Records: ingest (NDJSON or a JSON array), reads with cursor pagination,
//! and per-tenant stats.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use lethe_core::record::parse_ts;
use lethe_vault::ingest::IngestReport;
use lethe_vault::logs::LogQuery;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{blocking, now_us};
use crate::auth::{Caller, Need};
use crate::problem::ApiError;
use crate::App;

/// How long an ingest request waits for a slot before `503`.
const ADMISSION_WAIT: Duration = Duration::from_secs(2);

/// A line that was not stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line of the NDJSON body (or element of the JSON array).
    pub line: u64,
    /// The field at fault (`ts`, `fields.prompt`, `tenant`, `(line)`).
    pub field: String,
    /// What is wrong (never the value itself).
    pub message: String,
}

/// What an ingest request did. Every record counted in `stored` or
/// `duplicates` is durable when this is returned.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    /// Non-empty lines (or array elements) received.
    pub lines: u64,
    /// Records stored by this request.
    pub stored: u64,
    /// Records whose id was already stored (a retry): not stored again.
    pub duplicates: u64,
    /// Records counted but not stored (capture mode `none`).
    pub not_captured: u64,
    /// Lines refused; `errors` lists them (the first 1,000).
    pub rejected: u64,
    /// The refused lines with the field at fault.
    pub errors: Vec<LineError>,
}

impl From<IngestReport> for IngestResult {
    fn from(r: IngestReport) -> Self {
        IngestResult {
            lines: r.lines,
            stored: r.stored,
            duplicates: r.duplicates,
            not_captured: r.not_captured,
            rejected: r.rejected,
            errors: r
                .errors
                .into_iter()
                .map(|e| LineError {
                    line: e.line,
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// Stores records for a tenant: NDJSON (`application/x-ndjson`) or a JSON
/// array (`application/json`). Each record's `tenant` must be the one in
/// the path. Idempotent on record ids; a mixed body stores every valid
/// line and lists the others; a body with no valid line is `400`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/records", tag = "records",
    params(("tenant" = String, Path, description = "tenant id")),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "one record per line (or a JSON array of records with `application/json`)"),
    responses(
        (status = 200, description = "stored (see `rejected` for lines that were not)", body = IngestResult),
        (status = 400, description = "no valid record in the body", body = crate::problem::Problem),
        (status = 401, description = "no valid key", body = crate::problem::Problem),
        (status = 403, description = "key not allowed to write to this tenant", body = crate::problem::Problem),
        (status = 413, description = "body larger than `server.body_limit`", body = crate::problem::Problem),
        (status = 415, description = "neither NDJSON nor JSON", body = crate::problem::Problem),
        (status = 503, description = "ingest queue full: retry after `Retry-After` seconds", body = crate::problem::Problem),
    ))]
pub(crate) async fn ingest(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResult>, ApiError> {
    let tenant = caller.allow(Need::Ingest, &tenant)?;
    let kind = content_kind(&headers)?;
    // Admission before the body is read: at most `ingest_queue` bodies
    // are held at once, whatever the number of clients.
    let _slot = match tokio::time::timeout(ADMISSION_WAIT, app.ingest_slots.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(ApiError::busy("the ingest queue is full; retry shortly", 1)),
    };
    let limit = app.config.body_limit;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the server's limit of {limit} bytes; send smaller batches"),
        )
    })?;
    let (input, spans) = match kind {
        Kind::Ndjson => ndjson_spans(bytes.to_vec()),
        Kind::JsonArray => array_spans(&bytes)?,
    };
    if spans.is_empty() {
        return Err(ApiError::field("(body)", "the body holds no records"));
    }
    let a = app.clone();
    let sender = lethe_vault::ingest::Sender {
        tenant: tenant.clone(),
        actor: caller.actor(),
    };
    let report = blocking(move || Ok(a.vault.ingest_for(&sender, input, spans, now_us())?)).await?;
    app.metrics.ingested(tenant.as_str(), &report);
    let all_rejected = report.rejected > 0 && report.rejected == report.lines;
    let result = IngestResult::from(report);
    if all_rejected {
        let (field, detail) = match result.errors.first() {
            Some(f) => (
                f.field.clone(),
                format!(
                    "no record was stored: every line was rejected (first: line {}, field {})",
                    f.line, f.field
                ),
            ),
            None => ("(line)".into(), "no record was stored: every line was rejected".into()),
        };
        let mut e = ApiError::field(&field, detail);
        e = e.with_extra(serde_json::to_value(&result).expect("serializable"));
        return Err(e);
    }
    Ok(Json(result))
}

enum Kind {
    Ndjson,
    JsonArray,
}

fn content_kind(headers: &HeaderMap) -> Result<Kind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Ok(Kind::Ndjson)
        }
        "application/json" => Ok(Kind::JsonArray),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-ndjson (one record per line) or application/json (an array of records)",
        )),
    }
}

/// A body's bytes and its records' spans in them: (line number, start, end).
type Lines = (Vec<u8>, Vec<(u64, usize, usize)>);

/// Non-empty lines of an NDJSON body as (line number, start, end); a
/// trailing `\r` is not part of the line.
fn ndjson_spans(input: Vec<u8>) -> Lines {
    let mut spans = Vec::new();
    let mut start = 0;
    for (n, line) in input.split(|&b| b == b'\n').enumerate() {
        let end = start + line.len();
        let trimmed_end = if line.last() == Some(&b'\r') { end - 1 } else { end };
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            spans.push((n as u64 + 1, start, trimmed_end));
        }
        start = end + 1;
    }
    (input, spans)
}

/// Elements of a JSON array body, each as one line numbered from 1.
fn array_spans(body: &[u8]) -> Result<Lines, ApiError> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "(body)",
            format!(
                "with Content-Type application/json the body must be a JSON array of records (line {}, column {}: {})",
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Data => "not an array",
                    serde_json::error::Category::Eof => "unexpected end",
                    _ => "not valid JSON",
                }
            ),
        )
    })?;
    let mut input = Vec::with_capacity(body.len());
    let mut spans = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let start = input.len();
        input.extend_from_slice(item.get().as_bytes());
        spans.push((i as u64 + 1, start, input.len()));
    }
    Ok((input, spans))
}

/// Filters and paging of a read.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ReadParams {
    /// Only this stream (`name:version`).
    stream: Option<String>,
    /// Only this scope.
    scope: Option<String>,
    /// Only this data subject's records.
    subject: Option<String>,
    /// Event time ≥ this (RFC 3339).
    since: Option<String>,
    /// Event time < this (RFC 3339).
    until: Option<String>,
    /// Records per page (default 100, at most 1,000).
    limit: Option<usize>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    /// Records in the format ingest takes, personal fields decrypted;
    /// erased ones with `"erased": true`.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Records met that could not be shown (damaged, key unusable), without content.
    #[schema(value_type = Vec<Object>)]
    pub unreadable: Vec<lethe_vault::logs::Unreadable>,
}

/// Where a page ends: the last event time shown, and how many records
/// with exactly that time were shown (they are skipped next time).
#[derive(Serialize, Deserialize)]
struct Cursor {
    ts: i64,
    skip: usize,
}

/// Reads a tenant's records (admin: record bodies are personal data).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/records", tag = "records",
    params(("tenant" = String, Path, description = "tenant id"), ReadParams),
    responses(
        (status = 200, description = "a page of records", body = RecordPage),
        (status = 400, description = "a bad filter", body = crate::problem::Problem),
        (status = 403, description = "key not allowed", body = crate::problem::Problem),
    ))]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<ReadParams>,
) -> Result<Json<RecordPage>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "limit must be between 1 and 1000"));
    }
    let ascending = match p.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(ApiError::field("order", "order must be `asc` or `desc`")),
    };
    let mut since_us = super::time_param("since", &p.since)?;
    let mut until_us = super::time_param("until", &p.until)?;
    let cursor = match &p.cursor {
        None => None,
        Some(c) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
                .ok_or_else(|| ApiError::field("cursor", "cursor is not one this API returned"))?,
        ),
    };
    if let Some(c) = &cursor {
        // The page goes on from the cursor's time, inclusive; the records
        // already shown at exactly that time are skipped.
        if ascending {
            since_us = Some(since_us.map_or(c.ts, |s| s.max(c.ts)));
        } else {
            until_us = Some(until_us.map_or(c.ts + 1, |u| u.min(c.ts + 1)));
        }
    }
    let stream = p
        .stream
        .as_deref()
        .map(|s| {
            s.parse::<lethe_core::StreamId>()
                .map_err(|e| ApiError::field("stream", e.to_string()))
        })
        .transpose()?;
    let skip = cursor.as_ref().map_or(0, |c| c.skip);
    let q = LogQuery {
        tenant,
        stream,
        scope: p.scope,
        subject: p.subject,
        since_us,
        until_us,
        limit: Some(skip + limit + 1),
        ascending,
        restored: false,
    };
    let a = app.clone();
    let (mut records, report) = blocking(move || {
        let mut out = Vec::new();
        let report = a.vault.logs(&q, now_us(), &mut |v| {
            out.push(v);
            true
        })?;
        Ok((out, report))
    })
    .await?;
    let ts_of = |v: &serde_json::Value| v.get("ts").and_then(|t| t.as_str()).and_then(parse_ts);
    if let Some(c) = &cursor {
        let skipped = records
            .iter()
            .take(c.skip)
            .take_while(|r| ts_of(r) == Some(c.ts))
            .count();
        records.drain(..skipped);
    }
    let more = records.len() > limit;
    records.truncate(limit);
    let next_cursor = if more {
        let last = records.last().and_then(ts_of);
        last.map(|ts| {
            let mut at = records.iter().rev().take_while(|r| ts_of(r) == Some(ts)).count();
            if cursor.as_ref().is_some_and(|c| c.ts == ts) && at == records.len() {
                at += skip;
            }
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&Cursor { ts, skip: at }).expect("serializable"))
        })
    } else {
        None
    };
    Ok(Json(RecordPage {
        records,
        next_cursor,
        unreadable: report.unreadable,
    }))
}

/// A tenant's stats (sizes are this tenant's records only).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantStats {
    /// Tenant.
    pub tenant: String,
    /// Records stored.
    pub records: u64,
    /// Bytes on disk attributed to them.
    pub bytes: u64,
    /// Records counted but not stored (capture `none`).
    pub not_captured: u64,
    /// Per (stream, scope).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<lethe_vault::stats::StatsRow>,
}

/// Size and age of a tenant's records, per stream and scope.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/stats", tag = "records",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the tenant's stats", body = TenantStats),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn stats(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<TenantStats>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    let t = tenant.clone();
    let report = blocking(move || Ok(a.vault.stats(Some(&t))?)).await?;
    // Totals from the tenant's own rows: the data directory's size would
    // tell a tenant about everyone else's data.
    Ok(Json(TenantStats {
        tenant: tenant.to_string(),
        records: report.rows.iter().map(|r| r.records).sum(),
        bytes: report.rows.iter().map(|r| r.bytes).sum(),
        not_captured: report.rows.iter().map(|r| r.not_captured).sum(),
        rows: report.rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_keep_their_numbers_and_skip_blank_ones() {
        let (input, spans) = ndjson_spans(b"{\"a\":1}\r\n\n  \n{\"b\":2}".to_vec());
        assert_eq!(spans, vec![(1, 0, 7), (4, 13, 20)]);
        assert_eq!(&input[13..20], b"{\"b\":2}");
    }

    #[test]
    fn a_json_body_that_is_not_an_array_names_the_body() {
        let e = array_spans(b"{\"a\":1}").unwrap_err();
        assert_eq!(e.0.field.as_deref(), Some("(body)"));
        let (input, spans) = array_spans(b"[{\"a\":1}, {\"b\":[2]}]").unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(&input[spans[1].1..spans[1].2], b"{\"b\":[2]}");
    }
}
