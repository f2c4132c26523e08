//! Synthetic but realistic data for `lethe demo` and the bench harness: a year
//! of audit events and LLM request logs for a few tenants, in time order,
//! ~1 KB per record, with a Zipf-like spread of subjects and prompt/response
//! bodies made of real words.

use std::fmt::Write;

use lethe_core::record::format_ts;

const WORDS: &[&str] = &[
    "the",
    "a",
    "customer",
    "invoice",
    "account",
    "please",
    "update",
    "error",
    "when",
    "after",
    "before",
    "request",
    "order",
    "shipping",
    "refund",
    "payment",
    "failed",
    "succeeded",
    "user",
    "admin",
    "policy",
    "data",
    "export",
    "report",
    "quarterly",
    "summary",
    "ticket",
    "priority",
    "high",
    "low",
    "medium",
    "latency",
    "timeout",
    "retry",
    "service",
    "deployment",
    "kubernetes",
    "database",
    "query",
    "index",
    "table",
    "region",
    "europe",
    "us-east",
    "contract",
    "clause",
    "liability",
    "renewal",
    "terms",
    "model",
    "token",
    "prompt",
    "response",
    "answer",
    "question",
    "document",
    "attachment",
    "pdf",
    "spreadsheet",
    "email",
    "meeting",
    "calendar",
    "tomorrow",
    "yesterday",
    "monday",
    "friday",
    "urgent",
    "review",
    "approve",
    "reject",
    "escalate",
    "manager",
    "team",
    "project",
    "deadline",
    "budget",
    "forecast",
    "revenue",
    "cost",
    "discount",
    "license",
    "seat",
    "subscription",
    "cancel",
    "upgrade",
    "downgrade",
    "migrate",
    "backup",
    "restore",
    "password",
    "reset",
    "login",
    "session",
    "expired",
    "permission",
    "denied",
    "granted",
    "role",
    "group",
    "audit",
    "log",
    "retention",
    "delete",
    "archive",
    "compliance",
    "gdpr",
    "erasure",
    "subject",
    "consent",
    "cookie",
    "tracking",
    "analytics",
    "dashboard",
    "chart",
    "is",
    "are",
    "was",
    "not",
    "and",
    "or",
    "but",
    "with",
    "from",
    "into",
    "for",
    "of",
    "to",
    "in",
    "on",
    "my",
    "our",
    "your",
];

const TEMPLATES: &[&str] = &[
    "You are a helpful assistant for an enterprise customer. Answer concisely, cite internal documents when possible, and never reveal personal data about other users. Conversation follows:",
    "System: summarize the following support ticket for a tier-2 engineer. Include the product area, severity, reproduction steps and any customer-visible impact. Ticket text:",
    "Translate the message of the user into English, preserving named entities, numbers and formatting. If the message is already English, return it unchanged. Message:",
    "You are a code review bot. Point out bugs, security issues and style problems in the diff below. Be specific and reference line numbers where you can. Diff:",
    "Classify the intent of the following request into one of: billing, account, technical, sales, other. Respond with JSON containing intent and confidence. Request:",
    "Draft a polite reply to the customer email below. Keep it under 150 words, do not promise refunds, and escalate to a human if the customer mentions legal action. Email:",
    "Extract all dates, amounts and counterparties from the contract excerpt below and return them as a list of key/value pairs. Do not infer missing values. Excerpt:",
    "You are an internal search assistant. Use only the retrieved passages to answer the question of the employee and say you do not know if the passages are insufficient. Question:",
];

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "python-requests/2.31.0",
    "reqwest/0.12.4 rust-sdk/1.8.2",
    "okhttp/4.12.0",
    "curl/8.5.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
];

const MODELS: &[&str] = &[
    "gpt-4o",
    "claude-3-5-sonnet",
    "llama-3.1-70b",
    "mistral-large",
    "gpt-4o-mini",
    "gemini-1.5-pro",
];
const REGIONS: &[&str] = &[
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-west-2",
    "ap-southeast-1",
    "ca-central-1",
];
const ACTIONS: &[&str] = &[
    "create", "read", "update", "delete", "login", "logout", "export", "invoke",
];
const RESOURCES: &[&str] = &[
    "invoice",
    "user",
    "project",
    "api_key",
    "document",
    "report",
    "subscription",
    "policy",
];

/// The tenants of the synthetic data and their share of the records.
pub const TENANTS: &[(&str, u32)] = &[("acme", 40), ("globex", 30), ("initech", 20), ("umbrella", 10)];

/// The tenants of a synthetic shape with their weights: the four demo
/// tenants ([`TENANTS`]), or `n` tenants `t0001`… of Zipf-like sizes.
pub fn tenant_weights(n: Option<u32>) -> Vec<(String, u32)> {
    match n {
        None => TENANTS.iter().map(|(t, w)| (t.to_string(), *w)).collect(),
        Some(n) => (1..=n.max(1))
            .map(|k| (format!("t{k:04}"), (10_000 / k).max(1)))
            .collect(),
    }
}

/// Generates synthetic records as NDJSON lines.
pub struct Synth {
    state: u64,
    n: u64,
    i: u64,
    start_us: i64,
    span_us: i64,
    zipf: Vec<f64>,
    /// Tenant names with weights (`TENANTS` unless [`Synth::with_tenants`]).
    tenants: Vec<(String, u32)>,
}

impl Synth {
    /// `n` records spread evenly (in time order) over the `days` before `now_us`.
    pub fn new(seed: u64, n: u64, now_us: i64, days: u32) -> Self {
        Self::over(seed, n, now_us, days as i64 * 86_400_000_000)
    }

    /// `n` records spread evenly (in time order) over the `span_us`
    /// microseconds before `now_us` (e.g. the last hour).
    pub fn over(seed: u64, n: u64, now_us: i64, span_us: i64) -> Self {
        let subjects = (n / 100).clamp(1000, 100_000) as usize;
        let mut zipf = Vec::with_capacity(subjects);
        let mut acc = 0.0;
        for k in 1..=subjects {
            acc += 1.0 / (k as f64).powf(1.07);
            zipf.push(acc);
        }
        for z in &mut zipf {
            *z /= acc;
        }
        let span_us = span_us.max(1);
        Synth {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            n,
            i: 0,
            start_us: now_us - span_us,
            span_us,
            zipf,
            tenants: tenant_weights(None),
        }
    }

    /// The same records spread over `n` tenants (`t0001`, `t0002`, …) of
    /// Zipf-like sizes — a few large, most small — instead of the four
    /// demo tenants: the shape of a platform with many customers.
    pub fn with_tenants(mut self, n: u32) -> Self {
        self.tenants = tenant_weights(Some(n));
        self
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, m: u64) -> u64 {
        ((self.next() >> 32) * m) >> 32
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn weighted<'a>(&mut self, xs: &[(&'a str, u32)]) -> &'a str {
        let total: u32 = xs.iter().map(|x| x.1).sum();
        let mut r = self.below(total as u64) as u32;
        for (x, w) in xs {
            if r < *w {
                return x;
            }
            r -= w;
        }
        xs[0].0
    }

    fn words(&mut self, out: &mut String, chars: usize) {
        let start = out.len();
        while out.len() - start < chars {
            if out.len() > start {
                out.push(' ');
            }
            let w = self.pick(WORDS);
            out.push_str(w);
        }
    }

    fn subject(&mut self) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        self.zipf.partition_point(|&c| c < u) as u64
    }

    /// Writes the next record as one JSON line (no newline) into `out`;
    /// `false` once `n` records were produced.
    pub fn next_line(&mut self, out: &mut String) -> bool {
        if self.i >= self.n {
            return false;
        }
        let ts = self.start_us
            + (self.span_us as i128 * self.i as i128 / self.n as i128) as i64
            + self.below(1_000_000) as i64;
        self.i += 1;
        let tenants = std::mem::take(&mut self.tenants);
        let tenant = {
            let total: u64 = tenants.iter().map(|t| u64::from(t.1)).sum();
            let mut r = self.below(total);
            let mut pick = &tenants[0].0;
            for (t, w) in &tenants {
                if r < u64::from(*w) {
                    pick = t;
                    break;
                }
                r -= u64::from(*w);
            }
            pick.clone()
        };
        self.tenants = tenants;
        let tenant = tenant.as_str();
        let subj = self.subject();
        let region = self.pick(REGIONS);
        let latency = 20 + self.below(3000);
        if self.below(100) < 55 {
            let scope = self.weighted(&[
                ("chat-api", 50),
                ("/v1/completions", 25),
                ("agents", 15),
                ("embeddings", 10),
            ]);
            let class = self.weighted(&[("confidential", 85), ("restricted", 10), ("internal", 5)]);
            let _ = write!(
                out,
                r#"{{"tenant":"{tenant}","stream":"requests:1","scope":"{scope}","classification":"{class}","ts":"{}","subject":"user-{subj:06}","fields":{{"model":"{}","status":{},"input_tokens":{},"output_tokens":{},"latency_ms":{latency},"region":"{region}","user_email":"user{subj}@{tenant}.example","ip":"10.{}.{}.{}","prompt":"{} "#,
                format_ts(ts),
                self.pick(MODELS),
                if self.below(100) < 97 { 200 } else { 429 },
                50 + self.below(4000),
                10 + self.below(1000),
                self.below(256),
                self.below(256),
                self.below(256),
                self.pick(TEMPLATES),
            );
            let n = 220 + self.below(200) as usize;
            self.words(out, n);
            out.push_str(r#"","response":""#);
            let n = 300 + self.below(250) as usize;
            self.words(out, n);
            out.push_str("\"}}");
        } else {
            let scope = self.weighted(&[("web", 50), ("admin", 20), ("api", 30)]);
            let class = self.weighted(&[("internal", 80), ("restricted", 5), ("public", 15)]);
            let system = self.below(100) < 5;
            let _ = write!(
                out,
                r#"{{"tenant":"{tenant}","stream":"audit:1","scope":"{scope}","classification":"{class}","ts":"{}","#,
                format_ts(ts)
            );
            if !system {
                let _ = write!(out, r#""subject":"user-{subj:06}","#);
            }
            let _ = write!(
                out,
                r#""fields":{{"action":"{}","outcome":"{}","resource":"{}/{}","region":"{region}","latency_ms":{latency},"#,
                self.pick(ACTIONS),
                if self.below(100) < 95 { "success" } else { "denied" },
                self.pick(RESOURCES),
                self.below(100_000),
            );
            if !system {
                let _ = write!(
                    out,
                    r#""actor_email":"user{subj}@{tenant}.example","ip":"10.{}.{}.{}","user_agent":"{}","#,
                    self.below(256),
                    self.below(256),
                    self.below(256),
                    self.pick(AGENTS)
                );
            }
            out.push_str(r#""details":""#);
            let n = 450 + self.below(300) as usize;
            self.words(out, n);
            out.push_str("\"}}");
        }
        true
    }
}

/// Synthetic records as an NDJSON byte stream, for feeding the ingest
/// pipeline without a file.
pub struct SynthReader {
    synth: Synth,
    line: String,
    pos: usize,
}

impl SynthReader {
    /// Reads the records `synth` generates.
    pub fn new(synth: Synth) -> Self {
        SynthReader {
            synth,
            line: String::new(),
            pos: 0,
        }
    }
}

impl std::io::Read for SynthReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.line.len() {
            self.line.clear();
            self.pos = 0;
            if !self.synth.next_line(&mut self.line) {
                return Ok(0);
            }
            self.line.push('\n');
        }
        let n = buf.len().min(self.line.len() - self.pos);
        buf[..n].copy_from_slice(&self.line.as_bytes()[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lethe_core::config::Config;

    #[test]
    fn synthetic_lines_are_valid_records_of_about_a_kilobyte_in_time_order() {
        let schemas = Config::builtin().schemas();
        let mut s = Synth::new(1, 2000, 1_767_225_600_000_000, 365);
        let mut line = String::new();
        let mut total = 0;
        let mut last = 0;
        let mut n = 0;
        while {
            line.clear();
            s.next_line(&mut line)
        } {
            let r = lethe_core::record::parse(&line, &schemas).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(r.ts_us.unwrap() >= last - 1_000_000);
            last = r.ts_us.unwrap();
            total += line.len();
            n += 1;
        }
        assert_eq!(n, 2000);
        let avg = total / n;
        assert!((800..1300).contains(&avg), "average line {avg} bytes");
    }
}
