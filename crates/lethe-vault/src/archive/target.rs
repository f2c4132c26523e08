//! Archive targets: object storage (a local directory or an S3-compatible
//! bucket) behind the `object_store` crate, with a blocking interface — the
//! sweep is synchronous; uploads run on a small runtime of their own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use lethe_core::config::{ArchiveConfig, ArchiveTargetConfig, TargetKind};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

/// Why an archive target operation failed. Messages name the target and
/// object, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target is not configured correctly.
    #[error("archive target `{target}`: {message}")]
    Config {
        /// Target name.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// The object store reported an error.
    #[error("archive target `{target}`: {op} {path}: {source}")]
    Store {
        /// Target name.
        target: String,
        /// What was being done.
        op: &'static str,
        /// Object path.
        path: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// A read-back did not match what was written.
    #[error("archive target `{target}`: {path}: {message}")]
    Mismatch {
        /// Target name.
        target: String,
        /// Object path.
        path: String,
        /// What differs.
        message: String,
    },
    /// A local file operation failed.
    #[error("archive target `{target}`: {source}")]
    Io {
        /// Target name.
        target: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for target operations.
pub type Result<T, E = TargetError> = std::result::Result<T, E>;

/// Bytes read per request when reading an object back.
const READ_RANGE: u64 = 8 << 20;
/// Multipart part size.
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once (bounds memory: parts × part size).
const PARTS_IN_FLIGHT: usize = 4;

/// One configured target.
pub struct Target {
    /// Its name in `[archive.targets]`.
    pub name: String,
    /// Human description (`local /path` or `s3://bucket/prefix at endpoint`).
    pub describe: String,
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    prefix: Option<ObjectPath>,
}

/// The archive's own runtime, shut down without waiting when dropped:
/// the vault may be dropped on a thread of another runtime (the server's),
/// where a blocking shutdown panics. Every operation on it has finished
/// by then (each is `block_on`), so nothing is cut short.
struct Runtime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Runtime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Every configured target, with the runtime their I/O runs on.
pub struct Targets {
    rt: Runtime,
    /// Objects up to this many (compressed) bytes go up in one PUT; larger
    /// ones as a multipart upload to a staging name, renamed once complete
    /// (the name carries the last sequence number, known only at the end).
    single_put_max: usize,
    targets: BTreeMap<String, Target>,
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Compressed bytes.
    pub bytes: u64,
    /// SHA-256 of them (hex).
    pub sha256: String,
}

/// What a read-back found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Bytes read.
    pub bytes: u64,
    /// Their SHA-256 (hex).
    pub sha256: String,
    /// Lines in the decompressed content.
    pub lines: u64,
    /// Decompressed bytes.
    pub raw_bytes: u64,
}

impl Targets {
    /// Builds every target of `cfg` (relative local paths under `data_dir`).
    /// Nothing is contacted yet.
    pub fn open(cfg: &ArchiveConfig, data_dir: &Path) -> Result<Targets> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Local targets do their file I/O on the blocking pool; a few
            // threads suffice, and each one keeps allocator memory of its own.
            .max_blocking_threads(4)
            .thread_name("lethe-archive")
            .enable_all()
            .build()
            .map_err(|source| TargetError::Io {
                target: "*".into(),
                source,
            })?;
        let mut targets = BTreeMap::new();
        for (name, t) in cfg.effective_targets() {
            targets.insert(name.clone(), Target::build(&name, &t, data_dir)?);
        }
        Ok(Targets {
            rt: Runtime(Some(rt)),
            single_put_max: (cfg.multipart_above_kb as usize).saturating_mul(1024),
            targets,
        })
    }

    /// A target by name.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.get(name)
    }

    /// All targets, by name.
    pub fn all(&self) -> impl Iterator<Item = &Target> {
        self.targets.values()
    }

    /// Starts an upload of a new object; write to it, then [`Upload::finish`].
    pub fn upload<'a>(&'a self, target: &'a Target) -> Upload<'a> {
        Upload {
            rt: &self.rt,
            single_put_max: self.single_put_max,
            target,
            buf: Vec::new(),
            multipart: None,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads an object back: its size and SHA-256, and the lines and bytes
    /// of its zstd-decompressed content — streaming, in bounded memory.
    pub fn read_back(&self, target: &Target, path: &str) -> Result<ReadBack> {
        self.rt.block_on(read_back(
            target.store.clone(),
            target.name.clone(),
            path.to_string(),
            target.path(path),
        ))
    }

    /// Waits for an object's upload and read-back to complete.
    pub fn wait(&self, f: InFlight) -> Result<ReadBack> {
        let name = f.target.clone();
        self.rt.block_on(f.handle).map_err(|e| TargetError::Io {
            target: name,
            source: std::io::Error::other(e),
        })?
    }

    /// Visits the decompressed content of an object, in chunks.
    pub fn read_raw(&self, target: &Target, path: &str, sink: &mut dyn Write) -> Result<()> {
        let p = target.path(path);
        self.rt.block_on(async {
            let err = |op, source| TargetError::Store {
                target: target.name.clone(),
                op,
                path: path.to_string(),
                source: Box::new(source),
            };
            let size = target.store.head(&p).await.map_err(|e| err("head", e))?.size;
            let io = |source| TargetError::Io {
                target: target.name.clone(),
                source,
            };
            let mut dec = zstd::stream::write::Decoder::new(sink).map_err(io)?;
            let mut at = 0u64;
            while at < size {
                let end = size.min(at + READ_RANGE);
                let chunk = target.store.get_range(&p, at..end).await.map_err(|e| err("read", e))?;
                at = end;
                dec.write_all(&chunk).map_err(io)?;
            }
            dec.flush().map_err(io)
        })
    }

    /// Stores small objects (manifests), several PUTs at a time.
    pub fn put_many(&self, target: &Target, objects: Vec<(String, Vec<u8>)>) -> Result<()> {
        use futures::stream::TryStreamExt;
        self.rt.block_on(
            futures::stream::iter(objects.into_iter().map(|(path, bytes)| {
                let p = target.path(&path);
                async move {
                    target
                        .store
                        .put(&p, PutPayload::from(bytes))
                        .await
                        .map(|_| ())
                        .map_err(|source| TargetError::Store {
                            target: target.name.clone(),
                            op: "put",
                            path,
                            source: Box::new(source),
                        })
                }
            }))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>(),
        )?;
        Ok(())
    }

    /// Reads small objects (manifests) whole, several GETs at a time; a
    /// missing one reads as `None`. Results are in the order asked.
    pub fn fetch_many(&self, target: &Target, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        use futures::stream::TryStreamExt;
        self.rt.block_on(
            futures::stream::iter(paths.iter().map(|path| {
                let p = target.path(path);
                async move {
                    match target.store.get(&p).await {
                        Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                    .map_err(|source| TargetError::Store {
                        target: target.name.clone(),
                        op: "get",
                        path: path.clone(),
                        source: Box::new(source),
                    })
                }
            }))
            .buffered(16)
            .try_collect(),
        )
    }

    /// Reads a small object (a manifest) whole; `None` if it is not there.
    pub fn fetch(&self, target: &Target, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.fetch_many(target, &[path.to_string()])?.pop().flatten())
    }

    /// Whether an object exists (a HEAD request).
    pub fn exists(&self, target: &Target, path: &str) -> Result<bool> {
        let p = target.path(path);
        match self.rt.block_on(target.store.head(&p)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(TargetError::Store {
                target: target.name.clone(),
                op: "head",
                path: path.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Deletes an object; one that is not there counts as deleted.
    pub fn delete(&self, target: &Target, path: &str) -> Result<()> {
        let p = target.path(path);
        match self.rt.block_on(target.store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(TargetError::Store {
                target: target.name.clone(),
                op: "delete",
                path: path.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Every object path under `prefix` (relative to the target), sorted.
    pub fn list(&self, target: &Target, prefix: &str) -> Result<Vec<String>> {
        let p = target.path(prefix.trim_end_matches('/'));
        let strip = target.prefix.as_ref().map(|p| format!("{p}/"));
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut s = target.store.list(Some(&p));
            while let Some(m) = s.next().await {
                match m {
                    Ok(m) => {
                        let full = m.location.to_string();
                        let rel = match &strip {
                            Some(s) => full.strip_prefix(s.as_str()).unwrap_or(&full).to_string(),
                            None => full,
                        };
                        out.push(rel);
                    }
                    // A local target that was never written to has no directory yet.
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(source) => {
                        return Err(TargetError::Store {
                            target: target.name.clone(),
                            op: "list",
                            path: prefix.to_string(),
                            source: Box::new(source),
                        })
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    /// Makes what was written to a local target durable (one `syncfs` of
    /// its file system); a no-op for remote targets, whose PUT is durable
    /// when it returns.
    pub fn sync(&self, target: &Target) -> Result<()> {
        let Some(root) = &target.local_root else { return Ok(()) };
        let io = |source| TargetError::Io {
            target: target.name.clone(),
            source,
        };
        let f = std::fs::File::open(root).map_err(io)?;
        use std::os::fd::AsRawFd;
        // SAFETY: `f` is an open descriptor for the duration of the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Target {
    fn build(name: &str, t: &ArchiveTargetConfig, data_dir: &Path) -> Result<Target> {
        let cfg_err = |message: String| TargetError::Config {
            target: name.to_string(),
            message,
        };
        let prefix = t
            .prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(ObjectPath::from);
        match t.kind {
            TargetKind::Local => {
                let p = PathBuf::from(t.path.as_deref().unwrap_or("archive"));
                let root = if p.is_absolute() { p } else { data_dir.join(p) };
                std::fs::create_dir_all(&root).map_err(|source| TargetError::Io {
                    target: name.to_string(),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| cfg_err(format!("{}: {e}", root.display())))?
                    .with_automatic_cleanup(true);
                Ok(Target {
                    name: name.into(),
                    describe: format!("local {}", root.display()),
                    store: Arc::new(fs),
                    local_root: Some(root),
                    prefix,
                })
            }
            TargetKind::S3 => {
                let bucket = t.bucket.clone().ok_or_else(|| cfg_err("bucket is required".into()))?;
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_virtual_hosted_style_request(!t.path_style)
                    .with_allow_http(t.allow_http);
                if let Some(e) = &t.endpoint {
                    b = b.with_endpoint(e);
                }
                let region = t
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into());
                b = b.with_region(region).with_retry(object_store::RetryConfig {
                    max_retries: t.retries,
                    retry_timeout: std::time::Duration::from_secs(60),
                    ..Default::default()
                });
                if let Some(k) = &t.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &t.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                let s3 = b.build().map_err(|e| cfg_err(e.to_string()))?;
                let at = t.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
                let pre = prefix.as_ref().map(|p| format!("/{p}")).unwrap_or_default();
                Ok(Target {
                    name: name.into(),
                    describe: format!("s3://{bucket}{pre}{at}"),
                    store: Arc::new(s3),
                    local_root: None,
                    prefix,
                })
            }
        }
    }

    fn path(&self, rel: &str) -> ObjectPath {
        match &self.prefix {
            Some(p) => ObjectPath::from(format!("{p}/{rel}")),
            None => ObjectPath::from(rel),
        }
    }
}

/// A streaming upload: bytes written are hashed and sent — in one PUT when
/// they stay small, else as a multipart upload with a bounded number of
/// parts in flight, so memory does not grow with the object.
pub struct Upload<'a> {
    rt: &'a tokio::runtime::Runtime,
    single_put_max: usize,
    target: &'a Target,
    buf: Vec<u8>,
    multipart: Option<(WriteMultipart, String)>,
    hasher: Sha256,
    bytes: u64,
}

impl Upload<'_> {
    /// Completes the upload under `path` (known only now: it names the
    /// object's last sequence number) and reads the object back — in the
    /// background: what was sent is returned now, the read-back through
    /// [`Targets::wait`]. A small object's PUT runs in the background too.
    pub fn finish_checked(self, path: &str) -> Result<(Stored, InFlight)> {
        let target = self.target;
        let dest = target.path(path);
        let stored = Stored {
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        };
        let store = target.store.clone();
        let (name, rel) = (target.name.clone(), path.to_string());
        let err = move |op, p: &str, source| TargetError::Store {
            target: target.name.clone(),
            op,
            path: p.to_string(),
            source: Box::new(source),
        };
        let payload = match self.multipart {
            None => Some(self.buf),
            Some((mp, staging)) => {
                let sp = target.path(&staging);
                self.rt.block_on(mp.finish()).map_err(|e| err("upload", &staging, e))?;
                self.rt
                    .block_on(target.store.rename(&sp, &dest))
                    .map_err(|e| err("rename", &staging, e))?;
                None
            }
        };
        let handle = self.rt.spawn(async move {
            let put_err = |op, source| TargetError::Store {
                target: name.clone(),
                op,
                path: rel.clone(),
                source: Box::new(source),
            };
            if let Some(b) = payload {
                store
                    .put(&dest, PutPayload::from(b))
                    .await
                    .map_err(|e| put_err("put", e))?;
            }
            fault(store.as_ref(), &dest).await.map_err(|e| put_err("fault", e))?;
            read_back(store, name, rel, dest).await
        });
        Ok((
            stored,
            InFlight {
                target: target.name.clone(),
                handle,
            },
        ))
    }

    /// Abandons the upload (a multipart upload is aborted).
    pub fn abort(self) {
        if let Some((mp, _)) = self.multipart {
            let _ = self.rt.block_on(mp.abort());
        }
    }

    fn start_multipart(&mut self) -> std::io::Result<()> {
        let staging = format!("staging/{}.part", uuid::Uuid::new_v4());
        let p = self.target.path(&staging);
        let up = self
            .rt
            .block_on(self.target.store.put_multipart(&p))
            .map_err(std::io::Error::other)?;
        let _g = self.rt.enter();
        let mut mp = WriteMultipart::new_with_chunk_size(up, PART_SIZE);
        mp.write(&std::mem::take(&mut self.buf));
        self.multipart = Some((mp, staging));
        Ok(())
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(b);
        self.bytes += b.len() as u64;
        match &mut self.multipart {
            None => {
                self.buf.extend_from_slice(b);
                if self.buf.len() > self.single_put_max {
                    self.start_multipart()?;
                }
            }
            Some((mp, _)) => {
                let _g = self.rt.enter();
                mp.write(b);
                self.rt
                    .block_on(mp.wait_for_capacity(PARTS_IN_FLIGHT))
                    .map_err(std::io::Error::other)?;
            }
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An object whose upload and read-back run in the background (see
/// [`Upload::finish_checked`]); [`Targets::wait`] gives the read-back.
pub struct InFlight {
    target: String,
    handle: tokio::task::JoinHandle<Result<ReadBack>>,
}

/// Reads an object back (see [`Targets::read_back`]).
async fn read_back(store: Arc<dyn ObjectStore>, target: String, path: String, p: ObjectPath) -> Result<ReadBack> {
    let err = |op, source| TargetError::Store {
        target: target.clone(),
        op,
        path: path.clone(),
        source: Box::new(source),
    };
    let size = store.head(&p).await.map_err(|e| err("head", e))?.size;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut dec = zstd::stream::write::Decoder::new(LineCounter::default()).map_err(|source| TargetError::Io {
        target: target.clone(),
        source,
    })?;
    let mut bad = None;
    let mut at = 0u64;
    while at < size {
        // Large ranges: a local target's streamed GET hands over 8 KiB per
        // blocking-pool round trip, which costs more than the reading.
        let end = size.min(at + READ_RANGE);
        let chunk = store.get_range(&p, at..end).await.map_err(|e| err("read", e))?;
        at = end;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        if bad.is_none() {
            if let Err(e) = dec.write_all(&chunk) {
                bad = Some(e.to_string());
            }
        }
    }
    if bad.is_none() {
        if let Err(e) = dec.flush() {
            bad = Some(e.to_string());
        }
    }
    if let Some(e) = bad {
        return Err(TargetError::Mismatch {
            target,
            path,
            message: format!("not a valid zstd stream: {e}"),
        });
    }
    let c = dec.into_inner();
    Ok(ReadBack {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        lines: c.lines,
        raw_bytes: c.bytes,
    })
}

/// Fault injection for tests: with `LETHE_TEST_ARCHIVE_FAULT=corrupt`, every
/// object has one byte flipped on the target after it is written and before
/// it is read back — what a bad disk or a broken proxy would do.
async fn fault(store: &dyn ObjectStore, p: &ObjectPath) -> object_store::Result<()> {
    if std::env::var("LETHE_TEST_ARCHIVE_FAULT").as_deref() != Ok("corrupt") {
        return Ok(());
    }
    let mut b = store.get(p).await?.bytes().await?.to_vec();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    store.put(p, PutPayload::from(b)).await.map(|_| ())
}

/// Counts lines and bytes written to it.
#[derive(Default)]
struct LineCounter {
    lines: u64,
    bytes: u64,
}

impl Write for LineCounter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.lines += memchr_count(b);
        self.bytes += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn memchr_count(b: &[u8]) -> u64 {
    // Byte-wise compare-and-add vectorizes; chunks keep the counters small.
    b.chunks(255)
        .map(|c| c.iter().map(|&x| (x == b'\n') as u8).sum::<u8>() as u64)
        .sum()
}
