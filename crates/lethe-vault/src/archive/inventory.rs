//! What the archive holds: listing objects by their manifests, and checking
//! every object against its manifest and every manifest against the ledger.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::format::{Manifest, ObjectKey};
use crate::{Result, Vault, VaultError};

/// Which archived objects a listing or check covers.
#[derive(Debug, Clone, Default)]
pub struct ArchiveFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this stream (`name:version`).
    pub stream: Option<String>,
    /// Only objects with records at or after this event time (µs).
    pub since_us: Option<i64>,
    /// Only objects with records before this event time (µs).
    pub until_us: Option<i64>,
}

impl ArchiveFilter {
    /// Whether an object's records may fall within the filter.
    pub fn matches(&self, m: &Manifest) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == m.tenant)
            && self.stream.as_ref().is_none_or(|s| *s == m.stream)
            && self.since_us.is_none_or(|s| m.newest_us >= s)
            && self.until_us.is_none_or(|u| m.oldest_us < u)
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Target name.
    pub target: String,
    /// Its manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
}

/// One problem `archive verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveProblem {
    /// Target name.
    pub target: String,
    /// Object (or manifest) path.
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of `lethe archive verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveCheck {
    /// Objects read back and compared with their manifests.
    pub objects_checked: u64,
    /// Records in them.
    pub records_checked: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Manifests whose ledger entries were trimmed by ledger retention
    /// (their objects are still checked against the manifest).
    pub ledger_trimmed: u64,
    /// What is wrong.
    pub problems: Vec<ArchiveProblem>,
}

/// Manifests per target (or why a target could not be listed).
pub type TargetManifests = Vec<(String, std::result::Result<Vec<Manifest>, String>)>;

impl Vault {
    /// Every manifest on every target, optionally of one tenant (and stream).
    pub fn archive_manifests(&self, tenant: Option<&str>, stream: Option<&str>) -> Result<TargetManifests> {
        let all = self.archive_targets()?;
        let prefix = tenant.map(|t| ObjectKey::prefix(t, stream)).unwrap_or_default();
        let mut out = Vec::new();
        for t in all.all() {
            let listed = (|| -> Result<Vec<Manifest>> {
                let paths: Vec<String> = all
                    .list(t, &prefix)?
                    .into_iter()
                    .filter(|p| p.ends_with(".manifest.json"))
                    .collect();
                let mut ms = Vec::with_capacity(paths.len());
                for (p, b) in paths.iter().zip(all.fetch_many(t, &paths)?) {
                    let Some(b) = b else { continue };
                    let m: Manifest = serde_json::from_slice(&b)
                        .map_err(|e| VaultError::Archive(format!("archive target `{}`: {p}: {e}", t.name)))?;
                    ms.push(m);
                }
                Ok(ms)
            })();
            out.push((t.name.clone(), listed.map_err(|e| e.to_string())));
        }
        Ok(out)
    }

    /// Archived objects matching `f`, by target then path.
    pub fn archive_ls(&self, f: &ArchiveFilter) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for (target, ms) in self.archive_manifests(f.tenant.as_deref(), f.stream.as_deref())? {
            for manifest in ms.map_err(VaultError::Archive)? {
                if f.matches(&manifest) {
                    out.push(Listed {
                        target: target.clone(),
                        manifest,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Checks the archive: every object read back matches its manifest
    /// (size, SHA-256, record count), every manifest matches the ledger's
    /// `archive.written` record of it and names the sweep receipt that
    /// deleted its records, and no object lacks a manifest.
    pub fn archive_verify(&self, f: &ArchiveFilter, progress: &dyn Fn(u64, u64)) -> Result<ArchiveCheck> {
        let all = self.archive_targets()?;
        // What the ledger says was written (object → sha256), and the
        // receipts that name an archive run.
        let mut written: HashMap<(String, String), String> = HashMap::new();
        let mut receipts: HashMap<u64, String> = HashMap::new();
        let mut first_seq = None;
        self.each_entry(1, &mut |e| {
            first_seq.get_or_insert(e.seq);
            match e.kind.as_str() {
                "archive.written" => {
                    let b: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
                    let target = b["target"].as_str().unwrap_or_default().to_string();
                    for o in b["objects"].as_array().into_iter().flatten() {
                        if let (Some(obj), Some(sha)) = (o["object"].as_str(), o["sha256"].as_str()) {
                            written.insert((target.clone(), obj.to_string()), sha.to_string());
                        }
                    }
                }
                "receipt.sweep" => {
                    let b: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
                    if let Some(run) = b["archive"]["run"].as_str() {
                        receipts.insert(e.seq, run.to_string());
                    }
                }
                _ => {}
            }
            Ok(true)
        })?;
        let first_seq = first_seq.unwrap_or(1);
        let mut c = ArchiveCheck::default();
        let mut work = Vec::new();
        for t in all.all() {
            let prefix = f
                .tenant
                .as_deref()
                .map(|x| ObjectKey::prefix(x, f.stream.as_deref()))
                .unwrap_or_default();
            let paths = match all.list(t, &prefix) {
                Ok(p) => p,
                Err(e) => {
                    c.problems.push(ArchiveProblem {
                        target: t.name.clone(),
                        object: prefix,
                        problem: e.to_string(),
                    });
                    continue;
                }
            };
            let set: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
            // Every manifest in one batch of concurrent GETs.
            let names: Vec<String> = paths
                .iter()
                .filter(|p| p.ends_with(".manifest.json"))
                .cloned()
                .collect();
            let mut bodies: HashMap<&str, Option<Vec<u8>>> = names
                .iter()
                .map(String::as_str)
                .zip(all.fetch_many(t, &names)?)
                .collect();
            for p in &paths {
                let Some(key) = ObjectKey::parse(p) else { continue };
                if p.ends_with(".ndjson.zst") && !set.contains(key.manifest().as_str()) {
                    c.problems.push(ArchiveProblem {
                        target: t.name.clone(),
                        object: p.clone(),
                        problem: "object without a manifest (an interrupted run writes it again; otherwise not written by Lethe)".into(),
                    });
                }
                if !p.ends_with(".manifest.json") {
                    continue;
                }
                let body = bodies.remove(p.as_str()).flatten();
                let m: Manifest = match body.map(|b| serde_json::from_slice::<Manifest>(&b)) {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        c.problems.push(ArchiveProblem {
                            target: t.name.clone(),
                            object: p.clone(),
                            problem: format!("manifest does not parse: {e}"),
                        });
                        continue;
                    }
                    None => continue,
                };
                if !f.matches(&m) {
                    continue;
                }
                if !set.contains(key.object().as_str()) {
                    c.problems.push(ArchiveProblem {
                        target: t.name.clone(),
                        object: key.object(),
                        problem: "object missing (its manifest is there)".into(),
                    });
                    continue;
                }
                work.push((t, m));
            }
        }
        let total = work.len() as u64;
        for (i, (t, m)) in work.into_iter().enumerate() {
            progress(i as u64, total);
            let mut bad = |problem: String| {
                c.problems.push(ArchiveProblem {
                    target: t.name.clone(),
                    object: m.object.clone(),
                    problem,
                })
            };
            match m.archive_entry {
                Some(e) if e < first_seq => c.ledger_trimmed += 1,
                _ => match written.get(&(t.name.clone(), m.object.clone())) {
                    None => bad("no archive.written ledger entry records this object".into()),
                    Some(sha) if *sha != m.sha256 => {
                        bad(format!("manifest SHA-256 {} differs from the ledger's {sha}", m.sha256))
                    }
                    Some(_) => {}
                },
            }
            match m.receipt {
                None => bad("manifest names no receipt".into()),
                Some(r) if r < first_seq => {}
                Some(r) => match receipts.get(&r) {
                    Some(run) if *run == m.run => {}
                    Some(run) => bad(format!("receipt {r} is for archive run {run}, not {}", m.run)),
                    None => bad(format!("receipt {r} is not a sweep receipt of an archive run")),
                },
            }
            match all.read_back(t, &m.object) {
                Ok(back) => {
                    c.objects_checked += 1;
                    c.records_checked += back.lines;
                    c.bytes_read += back.bytes;
                    if back.sha256 != m.sha256 || back.bytes != m.bytes {
                        bad(format!(
                            "altered: {} bytes with SHA-256 {}, manifest says {} bytes with {}",
                            back.bytes, back.sha256, m.bytes, m.sha256
                        ));
                    } else if back.lines != m.records {
                        bad(format!("{} records, manifest says {}", back.lines, m.records));
                    }
                }
                Err(e) => bad(e.to_string()),
            }
        }
        progress(total, total);
        Ok(c)
    }
}
