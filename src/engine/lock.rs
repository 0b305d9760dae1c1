//! One operation per cluster at a time, across processes: an exclusive lock on a file in the
//! state directory, held for the life of the operation, with the holder described beside it
//! so a second process can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A held cluster lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    holder_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cluster {cluster} is busy: {holder}; wait for it to finish (or stop it) and run again"
    )]
    Busy { cluster: String, holder: String },
    #[error("failed to lock cluster {cluster} in {}: {source}", dir.display())]
    Io {
        cluster: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Open (creating it) a file to lock, keeping what it holds.
pub fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Take the lock of `cluster` for `command`, or fail at once naming the holder.
pub fn acquire(state_dir: &Path, cluster: &str, command: &str) -> Result<ClusterLock, Error> {
    let dir = state_dir.join("locks");
    let io = |source| Error::Io {
        cluster: cluster.to_string(),
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join(format!("{cluster}.lock"));
    let holder_path = dir.join(format!("{cluster}.holder"));
    let file = open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&holder_path)
                .ok()
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| "another paddock process holds its lock".to_string());
            return Err(Error::Busy {
                cluster: cluster.to_string(),
                holder: holder.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut h = File::create(&holder_path).map_err(io)?;
    write!(
        h,
        "`paddock {command}` (pid {}) holds it since {now}",
        std::process::id()
    )
    .map_err(io)?;
    Ok(ClusterLock {
        _file: file,
        holder_path,
    })
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.holder_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path(), "dev", "up").expect("first");
        let err = acquire(dir.path(), "dev", "down").expect_err("busy");
        let msg = err.to_string();
        assert!(msg.contains("cluster dev is busy"), "{msg}");
        assert!(msg.contains("`paddock up`"), "{msg}");
        assert!(
            acquire(dir.path(), "other", "up").is_ok(),
            "locks are per cluster"
        );
        drop(first);
        assert!(
            acquire(dir.path(), "dev", "down").is_ok(),
            "released on drop"
        );
    }
}
