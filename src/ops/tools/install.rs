//! Download one tool release, verify it, install it: atomically (a temporary file in the
//! version's directory, checked, made executable, renamed into place) and once across
//! processes (a lock per tool and version; a second process waits, then uses the first's).
//! Whatever fails leaves nothing at the final path and no temporary file behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::drivers::http;
use crate::drivers::provision::{Settings, Source};
use crate::engine::events::Events;

/// The largest checksum file accepted.
const MAX_CHECKSUMS: u64 = 1024 * 1024;
/// Progress is reported at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error("{url} lists no SHA-256 for {asset}")]
    NoChecksum { url: String, asset: String },
    #[error(
        "the SHA-256 of {url} is {actual}, but {checksum_url} says {expected}: the download is corrupt or was tampered with"
    )]
    Mismatch {
        url: String,
        checksum_url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} does not hold {member}")]
    NoMember { url: String, member: String },
    #[error("failed to install into {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn what_to_do(&self) -> String {
        match self {
            Error::Http(e) => format!(
                "check the network and that the mirror serves {} (tools.mirrors / PADDOCK_K3D_MIRROR / PADDOCK_HELM_MIRROR), then run again",
                e.url()
            ),
            Error::NoChecksum { .. } | Error::Mismatch { .. } | Error::NoMember { .. } => {
                "check the mirror: it must serve the release file and the checksum file the release publishes, unchanged".to_string()
            }
            Error::Io { path, .. } => format!(
                "make {} writable or point PADDOCK_CACHE_DIR at a writable directory",
                path.display()
            ),
        }
    }
}

/// The SHA-256 a checksum file lists for `asset`: lines `HEX  NAME` (`NAME` may carry a
/// directory, as k3d's `_dist/k3d-linux-amd64`, or sha256sum's binary mark `*`), or one bare
/// `HEX` (a file about that one asset).
pub fn expected_sha256(text: &str, asset: &str) -> Option<String> {
    let is_hex = |h: &str| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit());
    let mut words = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    let lines: Vec<Vec<&str>> = words.by_ref().filter(|w| !w.is_empty()).collect();
    if let [only] = lines.as_slice()
        && let [hex] = only.as_slice()
        && is_hex(hex)
    {
        return Some(hex.to_ascii_lowercase());
    }
    lines.iter().find_map(|w| match w.as_slice() {
        [hex, name] if is_hex(hex) => {
            let name = name.trim_start_matches('*');
            let base = name.rsplit('/').next().unwrap_or(name);
            (base == asset).then(|| hex.to_ascii_lowercase())
        }
        _ => None,
    })
}

/// Download, verify and install `source` (see the module).
pub async fn install(source: &Source, settings: &Settings, events: &Events) -> Result<(), Error> {
    let dir = source.dest.parent().unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _lock = lock(settings, source, events).await?;
    if crate::drivers::toolchain::is_executable(&source.dest) {
        events.note(&format!(
            "{} {} was installed by another paddock meanwhile: {}",
            source.tool.name(),
            source.version,
            source.dest.display()
        ));
        return Ok(());
    }
    let step = format!("tools/{}", source.tool.name());
    events.step_started(&step);
    let started = Instant::now();
    match download(source, settings, dir, &step, events).await {
        Ok(()) => {
            events.step_done(&step, started.elapsed());
            events.note(&format!(
                "installed {} {} into {}",
                source.tool.name(),
                source.version,
                source.dest.display()
            ));
            Ok(())
        }
        Err(e) => {
            events.step_failed(&step, started.elapsed(), &crate::engine::chain(&e));
            // Only an empty version directory goes; a binary installed there stays.
            let _ = std::fs::remove_dir(dir);
            Err(e)
        }
    }
}

/// The lock of this tool and version, waited for when another process holds it.
async fn lock(
    settings: &Settings,
    source: &Source,
    events: &Events,
) -> Result<std::fs::File, Error> {
    let dir = settings.cache_dir.join("tools").join(".locks");
    let path = dir.join(format!("{}-{}.lock", source.tool.name(), source.version));
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let file = crate::engine::lock::open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        Err(std::fs::TryLockError::WouldBlock) => {}
    }
    events.note(&format!(
        "waiting for another paddock that is downloading {} {}",
        source.tool.name(),
        source.version
    ));
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)
}

async fn download(
    source: &Source,
    settings: &Settings,
    dir: &Path,
    step: &str,
    events: &Events,
) -> Result<(), Error> {
    events.note(&format!(
        "downloading {} {} from {}",
        source.tool.name(),
        source.version,
        source.url
    ));
    let limits = settings.limits();
    let sums = http::get_bytes(
        &source.checksum_url,
        &http::Limits {
            max_bytes: MAX_CHECKSUMS,
            ..limits
        },
    )
    .await?;
    let expected =
        expected_sha256(&String::from_utf8_lossy(&sums), &source.asset).ok_or_else(|| {
            Error::NoChecksum {
                url: source.checksum_url.clone(),
                asset: source.asset.clone(),
            }
        })?;
    let temp = |what: &str| {
        tempfile::Builder::new()
            .prefix(&format!(".{}-{what}-", source.tool.name()))
            .tempfile_in(dir)
            .map_err(|e| Error::Io {
                path: dir.to_path_buf(),
                source: e,
            })
    };
    let mut file = temp("download")?;
    let mut hasher = Sha256::new();
    let mut last = Instant::now();
    http::get(&source.url, &limits, |chunk, done, total| {
        hasher.update(chunk);
        file.write_all(chunk)?;
        if let Some(total) = total
            && (last.elapsed() >= PROGRESS_EVERY || done == total)
        {
            last = Instant::now();
            events.progress(step, done, total);
        }
        Ok(())
    })
    .await?;
    let actual = format!("{:x}", hasher.finalize());
    if actual != expected {
        return Err(Error::Mismatch {
            url: source.url.clone(),
            checksum_url: source.checksum_url.clone(),
            expected,
            actual,
        });
    }
    let binary = match &source.member {
        None => file,
        Some(member) => {
            let mut out = temp("binary")?;
            extract(file.path(), member, out.as_file_mut(), source)?;
            out
        }
    };
    place(binary, &source.dest)
}

/// Copy `member` of the gzipped tarball at `tarball` into `out`.
fn extract(
    tarball: &Path,
    member: &str,
    out: &mut std::fs::File,
    source: &Source,
) -> Result<(), Error> {
    let io = |e| Error::Io {
        path: tarball.to_path_buf(),
        source: e,
    };
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(tarball).map_err(io)?);
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().to_string();
        if path.trim_start_matches("./") == member {
            std::io::copy(&mut entry, out).map_err(io)?;
            return Ok(());
        }
    }
    Err(Error::NoMember {
        url: source.url.clone(),
        member: member.to_string(),
    })
}

/// Make the verified file executable and rename it into place.
fn place(file: tempfile::NamedTempFile, dest: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| Error::Io {
        path: dest.to_path_buf(),
        source: e,
    };
    file.as_file().sync_all().map_err(io)?;
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    file.persist(dest).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::expected_sha256;

    const A: &str = "06d8f25bc3a971c4eb29e0ff08429b180402db0f4dec838c9eac427e296800a0";
    const B: &str = "5d3f22817d9e163ab6ed43572189dd49fe724d7a6948075b570067747eca8d3f";

    #[test]
    fn k3d_lists_build_paths_and_the_asset_is_matched_by_its_whole_name() {
        let sums = format!("{B}  _dist/k3d-linux-amd64.exe\n{A}  _dist/k3d-linux-amd64\n");
        assert_eq!(
            expected_sha256(&sums, "k3d-linux-amd64").as_deref(),
            Some(A)
        );
        assert_eq!(expected_sha256(&sums, "k3d-linux-arm64"), None);
    }

    #[test]
    fn helm_lists_one_file_and_a_bare_sum_or_binary_mark_is_read() {
        let name = "helm-v4.1.4-linux-amd64.tar.gz";
        assert_eq!(
            expected_sha256(&format!("{A}  {name}\n"), name).as_deref(),
            Some(A)
        );
        assert_eq!(
            expected_sha256(&format!("{A} *{name}\n"), name).as_deref(),
            Some(A)
        );
        assert_eq!(
            expected_sha256(&format!("{}\n", A.to_uppercase()), name).as_deref(),
            Some(A)
        );
        assert_eq!(expected_sha256(&format!("{A}  other.tar.gz\n"), name), None);
        assert_eq!(expected_sha256("not a sum  helm\n", name), None);
    }
}
