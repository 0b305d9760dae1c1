//! Where the daemon's specs come from: the repository folder (watched; a change is taken after
//! a quiet moment), or a branch of a git remote, fetched on an interval with the user's own
//! `git` and credentials into the state directory, each commit checked out into a tree of its
//! own so the one in force never changes under a running operation.

// An error is made once per failed fetch or start and carries its causes by value.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::drivers::exec::{Cmd, ExecError, exec};

/// A revision of the source: the folder to read specs from, and its commit (git).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub root: PathBuf,
    pub commit: Option<String>,
}

impl Revision {
    /// What operations record as their source: the commit, or the folder.
    pub fn label(&self) -> String {
        match &self.commit {
            Some(c) => c.clone(),
            None => self.root.display().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    Folder(PathBuf),
    Git {
        url: String,
        branch: String,
        /// `<state>/source`: the fetched repository and the checked-out trees.
        cache: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to fetch branch {branch} of {url}")]
    Fetch {
        url: String,
        branch: String,
        #[source]
        source: ExecError,
    },
    #[error("failed to check out commit {commit}")]
    Checkout {
        commit: String,
        #[source]
        source: ExecError,
    },
    #[error("failed to prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to watch {}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl Source {
    /// `folder` or `git`, and where.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            Source::Folder(root) => ("folder", root.display().to_string()),
            Source::Git { url, branch, .. } => ("git", format!("{url}#{branch}")),
        }
    }

    /// The newest revision: the folder itself, or the branch's head fetched and checked out.
    pub async fn newest(&self) -> Result<Revision, Error> {
        match self {
            Source::Folder(root) => Ok(Revision {
                root: root.clone(),
                commit: None,
            }),
            Source::Git { url, branch, cache } => newest_commit(url, branch, cache).await,
        }
    }
}

impl Source {
    /// Remove the checked-out trees of commits other than `keep` (the one in force and the
    /// newest): operations read their specs when they start, so older trees are not in use.
    pub async fn prune(&self, keep: &[&str]) {
        let Source::Git { cache, .. } = self else {
            return;
        };
        let repo = cache.join("repo");
        let Ok(trees) = std::fs::read_dir(cache.join("trees")) else {
            return;
        };
        let mut removed = false;
        for tree in trees.flatten() {
            let name = tree.file_name().to_string_lossy().into_owned();
            if keep.contains(&name.as_str()) {
                continue;
            }
            let path = tree.path().display().to_string();
            let _ = exec(git(&repo).args(["worktree", "remove", "--force", &path])).await;
            let _ = std::fs::remove_dir_all(tree.path());
            removed = true;
        }
        if removed {
            let _ = exec(git(&repo).args(["worktree", "prune"])).await;
        }
    }
}

fn git(repo: &Path) -> Cmd {
    Cmd::new("git").args(["-C".to_string(), repo.display().to_string()])
}

async fn newest_commit(url: &str, branch: &str, cache: &Path) -> Result<Revision, Error> {
    let repo = cache.join("repo");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let fetch_failed = |source| Error::Fetch {
        url: url.to_string(),
        branch: branch.to_string(),
        source,
    };
    if !repo.join(".git").exists() {
        std::fs::create_dir_all(&repo).map_err(io(&repo))?;
        exec(git(&repo).args(["init", "--quiet"]))
            .await
            .map_err(fetch_failed)?;
    }
    let tracking = format!("refs/remotes/origin/{branch}");
    exec(git(&repo).args([
        "fetch",
        "--quiet",
        "--no-tags",
        "--",
        url,
        &format!("+refs/heads/{branch}:{tracking}"),
    ]))
    .await
    .map_err(fetch_failed)?;
    let commit =
        exec(git(&repo).args(["rev-parse", "--verify", &format!("{tracking}^{{commit}}")]))
            .await
            .map_err(fetch_failed)?
            .stdout
            .trim()
            .to_string();
    let tree = cache.join("trees").join(&commit);
    let done = tree.join(".paddock-checked-out");
    if !done.exists() {
        let checkout = |source| Error::Checkout {
            commit: commit.clone(),
            source,
        };
        // A checkout a crash cut short is removed and made again.
        if tree.exists() {
            let _ = exec(git(&repo).args([
                "worktree",
                "remove",
                "--force",
                &tree.display().to_string(),
            ]))
            .await;
            let _ = std::fs::remove_dir_all(&tree);
        }
        let _ = exec(git(&repo).args(["worktree", "prune"])).await;
        exec(git(&repo).args([
            "worktree",
            "add",
            "--quiet",
            "--detach",
            &tree.display().to_string(),
            &commit,
        ]))
        .await
        .map_err(checkout)?;
        std::fs::write(&done, &commit).map_err(io(&done))?;
    }
    Ok(Revision {
        root: tree,
        commit: Some(commit),
    })
}

/// Watch a folder: a message on the returned channel after each burst of changes has been
/// quiet for `quiet` (changes under `.git` are ignored). The watcher lives as long as the
/// returned guard.
pub fn watch(
    root: &Path,
    quiet: Duration,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), Error> {
    use notify::Watcher;
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if ev.kind.is_access() {
            return;
        }
        let inside_git = ev
            .paths
            .iter()
            .all(|p| p.components().any(|c| c.as_os_str() == ".git"));
        if !inside_git {
            let _ = raw_tx.send(());
        }
    })
    .map_err(|source| Error::Watch {
        path: root.to_path_buf(),
        source,
    })?;
    watcher
        .watch(root, notify::RecursiveMode::Recursive)
        .map_err(|source| Error::Watch {
            path: root.to_path_buf(),
            source,
        })?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Debounce: wait until nothing has changed for `quiet`.
            loop {
                match tokio::time::timeout(quiet, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
}
