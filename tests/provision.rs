//! k3d and helm downloaded when the machine has none: against the sim's loopback tool mirror
//! (`paddock_sim::tool_mirror`), with a `PATH` that holds neither. A good download is verified,
//! installed into the cache and used; a checksum mismatch, a truncated body, a 404 and a
//! stalled server each fail saying so and leave nothing installed; two processes provisioning
//! at once end with one binary; downloads turned off fetch nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use paddock_sim::tool_mirror::{Fault, ToolMirror, os_arch};
use sha2::{Digest, Sha256};
use support::{World, stderr, stdout};

/// A machine without k3d and helm: an empty repository, an empty `PATH`, a fresh cache and
/// state directory, and a loopback mirror serving `binary` as both tools.
struct Fresh {
    dir: tempfile::TempDir,
    mirror: ToolMirror,
}

/// A small stand-in for the tools: it answers `version` as k3d 5 (and, asked for a template,
/// as helm 4) would, and lists no clusters.
const FAKE_TOOL: &str = "#!/bin/sh
case \"$1 $2\" in
  'version --template') echo v4.1.4 ;;
  'cluster list') echo '[]' ;;
  *) echo 'k3d version v5.9.0' ;;
esac
";

impl Fresh {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["repo", "bin", "cache", "state"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let tool = dir.path().join("fake-tool");
        std::fs::write(&tool, FAKE_TOOL).expect("write");
        let mirror = ToolMirror::start(&tool, 0).expect("mirror");
        Self { dir, mirror }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// paddock with this machine's environment.
    fn paddock(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paddock"));
        c.arg("-C").arg(self.path("repo")).args(args);
        environment(&mut c, &self.path("bin"), &self.cache(), &self.mirror);
        c.env("PADDOCK_STATE_DIR", self.path("state"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.paddock(args).output().expect("paddock runs")
    }
}

/// Point `c` at the mirror and the cache, with `PATH` = `bin` only and no tool given.
fn environment(c: &mut Command, bin: &Path, cache: &Path, mirror: &ToolMirror) {
    c.env("PATH", bin)
        .env("PADDOCK_CACHE_DIR", cache)
        .env("PADDOCK_K3D_MIRROR", mirror.k3d_base())
        .env("PADDOCK_HELM_MIRROR", mirror.helm_base())
        .env("PADDOCK_DOWNLOAD_STALL_TIMEOUT", "1s")
        .env_remove("PADDOCK_TOOLS_DOWNLOAD")
        .env_remove("PADDOCK_K3D")
        .env_remove("PADDOCK_HELM")
        .env_remove("PADDOCK_DIR");
}

/// Every file under `<cache>/tools` but the locks: installed binaries and leftovers alike.
fn installed(cache: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != ".locks") {
                walk(&p, out);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&cache.join("tools"), &mut out);
    out.sort();
    out
}

fn sha256(p: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(p).expect("read")))
}

fn k3d_asset() -> String {
    format!("k3d-{}", os_arch())
}

/// The requests for release files (not checksum files) the mirror answered.
fn artifact_requests(m: &ToolMirror) -> Vec<String> {
    m.requests()
        .into_iter()
        .filter(|p| p.contains("/assets/") || p.ends_with(".tar.gz"))
        .collect()
}

#[test]
fn up_on_a_machine_without_k3d_and_helm_downloads_verifies_and_uses_them() {
    let w = World::new(false);
    let sim = w.bin.join("k3d");
    let mirror = ToolMirror::start(&sim, 0).expect("mirror");
    let empty = w.home.path().join("empty-bin");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let cache = w.home.path().join("cache");
    let mut c = w.paddock_cmd(&["up", "ci", "-o", "json"]);
    environment(&mut c, &empty, &cache, &mirror);
    let out = c.output().expect("paddock runs");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let k3d = cache.join("tools/k3d/5.9.0/k3d");
    let helm = cache.join("tools/helm/4.1.4/helm");
    assert_eq!(installed(&cache), vec![helm.clone(), k3d.clone()]);
    let sim_sha = sha256(&sim);
    assert_eq!(sha256(&k3d), sim_sha, "k3d is the mirror's binary");
    assert_eq!(sha256(&helm), sim_sha, "helm is the tarball's member");
    for (tool, version, url) in [
        (
            "k3d",
            "5.9.0",
            format!("{}/v5.9.0/{}", mirror.k3d_base(), k3d_asset()),
        ),
        (
            "helm",
            "4.1.4",
            format!("{}/helm-v4.1.4-{}.tar.gz", mirror.helm_base(), os_arch()),
        ),
    ] {
        let note = |m: &str| {
            events
                .iter()
                .any(|e| e["event"] == "note" && e["message"] == m)
        };
        assert!(
            note(&format!("downloading {tool} {version} from {url}")),
            "{tool}"
        );
        let dest = cache.join(format!("tools/{tool}/{version}/{tool}"));
        assert!(note(&format!(
            "installed {tool} {version} into {}",
            dest.display()
        )));
        let step = format!("tools/{tool}");
        assert!(events.iter().any(|e| e["event"] == "progress"
            && e["step"] == step.as_str()
            && e["done"] == e["total"]));
    }
    // PATH holds neither tool: every k3d and helm run was the cached one.
    let runs = w.invocations();
    assert!(
        runs.iter()
            .any(|i| i.tool == "k3d" && i.args.starts_with(&["cluster".into(), "create".into()]))
    );
    assert!(
        runs.iter()
            .any(|i| i.tool == "helm" && i.args.contains(&"upgrade".to_string()))
    );
    assert_eq!(events.last().map(|r| r["ok"].clone()), Some(true.into()));
    // Installed once: the next command downloads nothing.
    let before = mirror.requests().len();
    let mut c = w.paddock_cmd(&["status", "ci"]);
    environment(&mut c, &empty, &cache, &mirror);
    let again = c.output().expect("paddock runs");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(mirror.requests().len(), before, "nothing fetched again");
}

/// `status` of any cluster provisions first: each fault fails it with `message` and leaves
/// no binary and no temporary file in the cache.
fn fails_and_leaves_nothing(fault: Fault, helm_only: bool, message: &str) {
    let m = Fresh::new();
    m.mirror.set_fault(fault);
    let mut c = m.paddock(&["status", "ci"]);
    if helm_only {
        // k3d given explicitly: only helm (the tarball) is provisioned.
        c.env("PADDOCK_K3D", m.path("fake-tool"));
    }
    let started = std::time::Instant::now();
    let out = c.output().expect("paddock runs");
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(message),
        "{fault:?}: want {message:?} in:\n{text}"
    );
    assert!(text.contains("what to do: check the"), "{text}");
    assert!(text.contains("tools.download: false"), "{text}");
    assert_eq!(installed(&m.cache()), Vec::<PathBuf>::new(), "{fault:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_checksum_mismatch_fails_naming_both_sums_and_installs_nothing() {
    let fake_sha = format!("{:x}", Sha256::digest(FAKE_TOOL));
    let bad = format!("{:x}", Sha256::digest(b"not the file"));
    fails_and_leaves_nothing(
        Fault::BadChecksum,
        false,
        &format!("/v5.9.0/{} is {fake_sha}, but", k3d_asset()),
    );
    fails_and_leaves_nothing(Fault::BadChecksum, false, &format!("says {bad}"));
    fails_and_leaves_nothing(
        Fault::BadChecksum,
        true,
        &format!(".tar.gz.sha256sum says {bad}: the download is corrupt or was tampered with"),
    );
}

#[test]
fn a_truncated_download_fails_with_the_bytes_received_and_installs_nothing() {
    let n = FAKE_TOOL.len();
    fails_and_leaves_nothing(
        Fault::Truncated,
        false,
        &format!("truncated: received {} of {n} bytes", n / 2),
    );
    fails_and_leaves_nothing(Fault::Truncated, true, "truncated: received");
}

#[test]
fn a_missing_release_file_fails_with_the_url_and_status() {
    fails_and_leaves_nothing(
        Fault::NotFound,
        false,
        &format!(
            "/assets/{}?sig=sim: the server answered 404 Not Found",
            k3d_asset()
        ),
    );
}

#[test]
fn a_stalled_download_fails_after_the_stall_timeout() {
    fails_and_leaves_nothing(
        Fault::Stall,
        false,
        "stalled for 1s (no bytes) after 16 bytes",
    );
}

#[test]
fn two_processes_provisioning_at_once_end_with_one_binary_downloaded_once() {
    let m = Fresh::new();
    m.mirror.set_fault(Fault::Slow);
    let spawn = || {
        m.paddock(&["status", "ci"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paddock starts")
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a, b].map(|c| c.wait_with_output().expect("wait"));
    // Both got past provisioning: they fail only because cluster ci does not exist.
    for o in &outs {
        assert!(
            stderr(o).contains("cluster ci does not exist"),
            "{}",
            stderr(o)
        );
    }
    let k3d = m.cache().join("tools/k3d/5.9.0/k3d");
    let helm = m.cache().join("tools/helm/4.1.4/helm");
    assert_eq!(installed(&m.cache()), vec![helm.clone(), k3d.clone()]);
    let fake_sha = format!("{:x}", Sha256::digest(FAKE_TOOL));
    assert_eq!((sha256(&k3d), sha256(&helm)), (fake_sha.clone(), fake_sha));
    // The second waited for the first and used its binaries: each file was served once.
    assert_eq!(
        artifact_requests(&m.mirror).len(),
        2,
        "{:?}",
        m.mirror.requests()
    );
    let all: String = outs
        .iter()
        .map(stderr)
        .chain(outs.iter().map(stdout))
        .collect();
    assert!(
        all.contains("waiting for another paddock that is downloading"),
        "{all}"
    );
}

#[test]
fn downloads_off_refuse_with_the_install_help_and_fetch_nothing() {
    let m = Fresh::new();
    let flag = m.run(&["--no-download", "status", "ci"]);
    let text = stderr(&flag);
    assert!(!flag.status.success());
    assert!(
        text.contains(&format!(
            "k3d was not found and downloads are off (--no-download), so paddock did not fetch k3d 5.9.0 from {}/v5.9.0/{}",
            m.mirror.k3d_base(),
            k3d_asset()
        )),
        "{text}"
    );
    assert!(text.contains("what to do: install k3d 5.x"), "{text}");
    std::fs::write(m.path("repo/paddock.yaml"), "tools:\n  download: false\n").expect("write");
    let file = m.run(&["status", "ci"]);
    assert!(
        stderr(&file).contains("downloads are off (`tools.download: false` in paddock.yaml)"),
        "{}",
        stderr(&file)
    );
    let env = m
        .paddock(&["status", "ci"])
        .env("PADDOCK_TOOLS_DOWNLOAD", "0")
        .output();
    assert!(stderr(&env.expect("runs")).contains("downloads are off (PADDOCK_TOOLS_DOWNLOAD=0)"));
    assert_eq!(m.mirror.requests(), Vec::<String>::new(), "nothing fetched");
    assert_eq!(installed(&m.cache()), Vec::<PathBuf>::new());
}

#[test]
fn a_tool_given_explicitly_is_never_replaced_by_a_download() {
    let m = Fresh::new();
    let out = m
        .paddock(&["status", "ci"])
        .env("PADDOCK_K3D", "/nonexistent/k3d")
        .env("PADDOCK_HELM", m.path("fake-tool"))
        .output()
        .expect("runs");
    assert!(
        stderr(&out).contains("k3d was not found"),
        "{}",
        stderr(&out)
    );
    // Even one too old for paddock: what the user named is what runs.
    let old = old_k3d(&m, "old-k3d");
    let out = m
        .paddock(&["status", "ci"])
        .env("PADDOCK_K3D", &old)
        .env("PADDOCK_HELM", m.path("fake-tool"))
        .output()
        .expect("runs");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("older than"), "{text}");
    assert_eq!(m.mirror.requests(), Vec::<String>::new(), "nothing fetched");
    assert_eq!(installed(&m.cache()), Vec::<PathBuf>::new());
}

/// An executable k3d 4 at `name` in the fresh machine's directory.
fn old_k3d(m: &Fresh, name: &str) -> PathBuf {
    let old = m.path(name);
    std::fs::write(&old, "#!/bin/sh\necho 'k3d version v4.4.8'\n").expect("write");
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    old
}

#[test]
fn a_too_old_k3d_on_path_is_replaced_by_the_pinned_release() {
    let m = Fresh::new();
    let old = old_k3d(&m, "bin/k3d");
    let out = m.run(&["status", "ci"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains(&format!(
            "k3d 4.4.8 at {} is older than k3d 5; using k3d 5.9.0 from paddock's cache instead",
            old.display()
        )),
        "{text}"
    );
    assert!(m.cache().join("tools/k3d/5.9.0/k3d").is_file());
}

#[test]
fn doctor_says_what_it_would_download_and_fails_with_downloads_off() {
    let m = Fresh::new();
    let on = stdout(&m.run(&["doctor"]));
    let dest = m.cache().join("tools/k3d/5.9.0/k3d");
    let want = format!(
        "! k3d                          not found; the commands that need it download k3d 5.9.0 from {base}/v5.9.0/{asset} (checked against {base}/v5.9.0/checksums.txt) into {}",
        dest.display(),
        base = m.mirror.k3d_base(),
        asset = k3d_asset()
    );
    assert!(on.contains(&want), "{on}");
    assert!(on.contains("! helm                         not found; the commands that need it download helm 4.1.4"), "{on}");
    let off = stdout(&m.run(&["--no-download", "doctor"]));
    assert!(
        off.contains("✗ k3d                          not found, and downloads are off (--no-download)\n  fix: install k3d 5.x"),
        "{off}"
    );
    assert_eq!(
        m.mirror.requests(),
        Vec::<String>::new(),
        "doctor fetches nothing"
    );
    // Once installed, doctor reports the cached tool with its path.
    assert!(m.run(&["status", "ci"]).status.code().is_some());
    let cached = stdout(&m.run(&["doctor"]));
    assert!(
        cached.contains(&format!("({})", dest.display())),
        "{cached}"
    );
}

#[test]
fn a_command_whose_output_is_a_document_reports_the_download_as_events_on_stderr() {
    let m = Fresh::new();
    let out = m.run(&["status", "ci", "-o", "json"]);
    let doc: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout is JSON"))
        .collect();
    assert_eq!(doc.len(), 1, "one document on stdout: {doc:?}");
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for tool in ["k3d", "helm"] {
        let step = format!("tools/{tool}");
        assert!(
            events.iter().any(|e| e["event"] == "step"
                && e["step"] == step.as_str()
                && e["status"] == "done"),
            "{tool}: {events:?}"
        );
    }
}
