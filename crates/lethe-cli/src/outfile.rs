//! Output files that appear whole or not at all: written as an unnamed
//! file in the target's directory (`O_TMPFILE`) and linked into place only
//! once complete, so a failed or killed run leaves nothing behind — no
//! `.partial` file of decrypted records outside the file asked for.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A file being written that has no name yet.
pub struct OutFile {
    file: File,
    target: PathBuf,
}

impl OutFile {
    /// Starts writing what will become `target` (mode 0600: it may hold
    /// decrypted personal fields).
    pub fn create(target: &Path) -> Result<OutFile> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .with_context(|| format!("{}: not a path", dir.display()))?;
        // SAFETY: `c` is a valid NUL-terminated path; the returned
        // descriptor is owned by the File below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC, 0o600) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("creating an unnamed file in {} (O_TMPFILE)", dir.display()));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(OutFile {
            file,
            target: target.to_path_buf(),
        })
    }

    /// Syncs the file and gives it its name (replacing a file of that name).
    pub fn persist(mut self) -> Result<()> {
        self.file.flush()?;
        self.file.sync_all()?;
        let proc = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let link = |to: &Path| -> std::io::Result<()> {
            let from = std::ffi::CString::new(proc.as_bytes()).expect("no NUL");
            let to = std::ffi::CString::new(to.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
            // SAFETY: both are valid NUL-terminated paths.
            let rc = unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        match link(&self.target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&self.target).with_context(|| format!("replacing {}", self.target.display()))?;
                link(&self.target).with_context(|| format!("naming {}", self.target.display()))
            }
            Err(e) => Err(e).with_context(|| format!("naming {}", self.target.display())),
        }
    }
}

impl Write for OutFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.file.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
