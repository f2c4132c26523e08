//! Witnesses: the vault publishes its signed ledger head — the last entry's
//! number and hash, with the checkpoints signed since the last publication —
//! to places it cannot rewrite (`[witness]`: a file, a command, archive
//! targets), and `verify --witness` holds the vault to the newest head
//! published. A vault put back to an older copy (its data directory, or
//! its partition files) cannot show that head: its ledger lacks the entry
//! or differs there, and its chains are shorter than the checkpoints the
//! witness saw. Nothing inside the vault can prove that on its own.

use std::io::Write;

use lethe_core::checkpoint::hex32;
use lethe_core::merkle::Hash;
use lethe_core::record::format_ts;
use serde::{Deserialize, Serialize};

use crate::seal::CheckpointBody;
use crate::verify::VerifyReport;
use crate::{Result, Vault, VaultError};

/// Catalog key: the ledger entry the last publication reached.
const PUBLISHED: &str = "witness.published";

/// Prefix of heads published to an archive target.
pub const ARCHIVE_PREFIX: &str = "witness/";

/// The ledger head as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerHead {
    /// Sequence number of the last entry.
    pub seq: u64,
    /// Its hash.
    #[serde(with = "hex32")]
    pub hash: Hash,
    /// When it was published.
    pub at: String,
}

/// A chain's checkpoint as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnessed {
    /// Tenant.
    pub tenant: String,
    /// Stream.
    pub stream: String,
    /// Records the checkpoint covers.
    pub size: u64,
    /// Its tree head.
    #[serde(with = "hex32")]
    pub root: Hash,
}

/// What is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadBody {
    /// Format of this statement.
    pub format: u32,
    /// The ledger head.
    pub ledger: LedgerHead,
    /// Checkpoints signed since the previous publication.
    pub checkpoints: Vec<Witnessed>,
}

/// One published statement: a JSON line of the witness file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadStatement {
    /// What is signed (its JSON serialization).
    pub head: HeadBody,
    /// Ed25519 signature (hex) with the vault's checkpoint key.
    pub signature: String,
    /// The key it verifies with (hex); pin it, do not trust it from here.
    pub public_key: String,
}

impl Vault {
    /// Publishes the ledger head to every configured witness, if the ledger
    /// moved since the last publication. Returns the entry published up to.
    /// A witness that fails is an error (the next publication repeats what
    /// it missed); the act that changed the ledger stands.
    pub fn publish_witness(&self, now_us: i64) -> Result<Option<u64>> {
        let w = &self.config.witness;
        if !w.any() {
            return Ok(None);
        }
        let from: u64 = self.store.meta(PUBLISHED)?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut last = None;
        let mut checkpoints = Vec::new();
        self.each_entry(from + 1, &mut |e| {
            if e.kind == "checkpoint" {
                if let Ok(b) = serde_json::from_str::<CheckpointBody>(&e.body) {
                    checkpoints.push(Witnessed {
                        tenant: b.checkpoint.tenant,
                        stream: b.checkpoint.stream,
                        size: b.checkpoint.size,
                        root: b.checkpoint.root,
                    });
                }
            }
            last = Some((e.seq, e.hash));
            Ok(true)
        })?;
        let Some((seq, hash)) = last else {
            return Ok(None);
        };
        let head = HeadBody {
            format: 1,
            ledger: LedgerHead {
                seq,
                hash,
                at: format_ts(now_us),
            },
            checkpoints,
        };
        let signed = serde_json::to_vec(&head).expect("heads serialize");
        let statement = HeadStatement {
            signature: hex::encode(self.signer.sign_head(&signed)),
            public_key: self.public_key(),
            head,
        };
        let line = serde_json::to_string(&statement).expect("heads serialize");
        let mut failed = Vec::new();
        if let Some(f) = &w.file {
            if let Err(e) = append_line(f, &line) {
                failed.push(format!("witness file {f}: {e}"));
            }
        }
        if let Some(c) = &w.command {
            if let Err(e) = run_command(c, &line) {
                failed.push(format!("witness command: {e}"));
            }
        }
        if !w.archive.is_empty() {
            let targets = self.archive_targets()?;
            for name in &w.archive {
                let r = match targets.target(name) {
                    Some(t) => targets
                        .put_many(
                            t,
                            vec![(format!("{ARCHIVE_PREFIX}{seq:020}.json"), line.clone().into_bytes())],
                        )
                        .map_err(|e| e.to_string()),
                    None => Err("no such archive target".into()),
                };
                if let Err(e) = r {
                    failed.push(format!("witness archive target {name}: {e}"));
                }
            }
        }
        if !failed.is_empty() {
            return Err(VaultError::Archive(format!(
                "the ledger head (entry {seq}) was not published everywhere: {}",
                failed.join("; ")
            )));
        }
        self.store.set_meta(PUBLISHED, Some(&seq.to_string()))?;
        Ok(Some(seq))
    }

    /// Publishes the ledger head, turning a failure into a warning for the
    /// command's report (and the log): the act itself is done.
    pub(crate) fn publish_or_warn(&self, now_us: i64, warnings: &mut Vec<String>) {
        if let Err(e) = self.publish_witness(now_us) {
            tracing::warn!("{e}");
            warnings.push(e.to_string());
        }
    }

    /// Every head published to the configured witnesses that can be read
    /// back: the witness file and the archive targets (a command is
    /// write-only; keep what it publishes and pass it as a file).
    pub fn witnessed_heads(&self) -> Result<Vec<HeadStatement>> {
        let w = &self.config.witness;
        if w.file.is_none() && w.archive.is_empty() {
            return Err(VaultError::Invalid(
                "witness: no witness file or archive target is configured ([witness] file / archive); name a file with --witness-file".into(),
            ));
        }
        let mut out = Vec::new();
        if let Some(f) = &w.file {
            out.extend(read_heads(std::path::Path::new(f))?);
        }
        if !w.archive.is_empty() {
            let targets = self.archive_targets()?;
            for name in &w.archive {
                let t = targets
                    .target(name)
                    .ok_or_else(|| VaultError::Archive(format!("no archive target `{name}`")))?;
                let paths = targets.list(t, ARCHIVE_PREFIX)?;
                for body in targets.fetch_many(t, &paths)?.into_iter().flatten() {
                    let text = String::from_utf8_lossy(&body);
                    out.push(serde_json::from_str(text.trim()).map_err(|e| {
                        VaultError::Invalid(format!("a head in archive target {name} does not parse: {e}"))
                    })?);
                }
            }
        }
        Ok(out)
    }

    /// Holds the vault to the newest head the statements show: the ledger
    /// must hold that entry with that hash (else it was rolled back or
    /// rewritten), and every witnessed checkpoint is added to the ones
    /// `verify` recomputes (a chain shorter than one is reported as rolled
    /// back, with its chain and size). Statements whose signature does not
    /// verify with this vault's key are reported and ignored.
    pub(crate) fn check_witness(
        &self,
        statements: &[HeadStatement],
        report: &mut VerifyReport,
    ) -> Result<Vec<(Witnessed, String)>> {
        let public = self.signer.public_key();
        let mut good: Vec<&HeadStatement> = Vec::new();
        for (i, s) in statements.iter().enumerate() {
            let body = serde_json::to_vec(&s.head).expect("heads serialize");
            let sig = hex::decode(&s.signature).unwrap_or_default();
            if lethe_core::checkpoint::verify_head(&public, &body, &sig) {
                good.push(s);
            } else {
                report.gap(
                    "",
                    "(witness)",
                    i as u64 + 1,
                    "a published head's signature does not verify with this vault's key",
                );
            }
        }
        let Some(newest) = good.iter().max_by_key(|s| s.head.ledger.seq) else {
            report.gap("", "(witness)", 0, "the witness holds no head of this vault");
            return Ok(Vec::new());
        };
        let want = &newest.head.ledger;
        match self.store.ledger(want.seq, 1)?.into_iter().next() {
            Some(e) if e.seq == want.seq => {
                if e.hash != want.hash {
                    report.gap(
                        "",
                        "(ledger)",
                        want.seq,
                        format!(
                            "ledger entry {} differs from the one published to the witness at {}: the ledger was rewritten",
                            want.seq, want.at
                        ),
                    );
                }
            }
            Some(_) => {
                // Trimmed by ledger retention: an anchor must reach past it.
                let mut scratch = VerifyReport::default();
                let through = self.anchor(&mut scratch)?.map_or(0, |(_, a)| a.through);
                if through < want.seq {
                    report.gap(
                        "",
                        "(ledger)",
                        want.seq,
                        format!("ledger entry {} published to the witness at {} is missing", want.seq, want.at),
                    );
                }
            }
            None => report.gap(
                "",
                "(ledger)",
                want.seq,
                format!(
                    "the ledger holds no entry {} — the witness saw it at {}: the vault was rolled back to an older copy, or its ledger truncated",
                    want.seq, want.at
                ),
            ),
        }
        let mut latest: std::collections::BTreeMap<(String, String), (Witnessed, String)> = Default::default();
        for s in &good {
            for c in &s.head.checkpoints {
                let k = (c.tenant.clone(), c.stream.clone());
                if latest.get(&k).is_none_or(|(w, _)| w.size < c.size) {
                    latest.insert(k, (c.clone(), s.head.ledger.at.clone()));
                }
            }
        }
        Ok(latest.into_values().collect())
    }
}

/// Reads a witness file: one head per line.
pub fn read_heads(path: &std::path::Path) -> Result<Vec<HeadStatement>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| VaultError::Invalid(format!("witness file {}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                VaultError::Invalid(format!(
                    "witness file {} line {}: not a published head: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Appends one line and syncs it.
fn append_line(path: &str, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

/// Runs `sh -c command` with `line` on its standard input.
fn run_command(command: &str, line: &str) -> std::io::Result<()> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{line}\n").as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("exited with {status}")));
    }
    Ok(())
}
