//! One daemon per state directory: an exclusive lock on `daemon.lock`, held for the daemon's
//! life (the kernel drops it when the process dies, so a `kill -9` leaves nothing to clean),
//! with the holder described in `daemon.holder` so a second daemon names the first.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Instance {
    _file: File,
    holder: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "another daemon serves the state directory {}: {holder}; stop it (or use another --state-dir) first",
        dir.display()
    )]
    Running { dir: PathBuf, holder: String },
    #[error("failed to lock the state directory {}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Claim `state_dir` for this daemon (serving on `socket`), or say who has it.
pub fn claim(state_dir: &Path, socket: &Path, started: &str) -> Result<Instance, Error> {
    let io = |source| Error::Io {
        dir: state_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("daemon.lock"))
        .map_err(io)?;
    let holder = state_dir.join("daemon.holder");
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let said = std::fs::read_to_string(&holder)
                .ok()
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| "a paddock daemon (it has not said which yet)".into());
            return Err(Error::Running {
                dir: state_dir.to_path_buf(),
                holder: said.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut h = File::create(&holder).map_err(io)?;
    write!(
        h,
        "`paddock serve` (pid {}) since {started}, socket {}",
        std::process::id(),
        socket.display()
    )
    .map_err(io)?;
    Ok(Instance {
        _file: file,
        holder,
    })
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("paddock.sock");
        let first = claim(dir.path(), &sock, "2026-12-04T21:00:00Z").expect("first");
        let e = claim(dir.path(), &sock, "later").expect_err("second");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("since 2026-12-04T21:00:00Z"), "{msg}");
        drop(first);
        claim(dir.path(), &sock, "again").expect("free once the first is gone");
    }
}
