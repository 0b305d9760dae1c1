//! The real tools tests drive beside the sim (kubectl 1.35 and helm 4, from
//! `scripts/install-tools`), and how a test without them behaves: skipped with a message, or
//! failed when `PADDOCK_REQUIRE_TOOLS=1` (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real kubectl: the repository's `.tools/bin/kubectl` (installed on first use), else one
/// on `PATH`. When there is none, a test skips (it gets `None` and a message is printed), or
/// panics under `PADDOCK_REQUIRE_TOOLS=1`.
pub fn kubectl() -> Option<PathBuf> {
    tool("kubectl", &["version", "--client"])
}

/// The real helm (4.x), found as [`kubectl`] is.
pub fn helm() -> Option<PathBuf> {
    tool("helm", &["version", "--short"])
}

fn tool(name: &str, version_args: &[&str]) -> Option<PathBuf> {
    let local = workspace().join(".tools/bin").join(name);
    if !local.is_file() {
        let _ = Command::new(workspace().join("scripts/install-tools")).status();
    }
    if local.is_file() {
        return Some(local);
    }
    let on_path = Command::new(name)
        .args(version_args)
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Some(PathBuf::from(name));
    }
    if std::env::var("PADDOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!(
            "{name} is required (PADDOCK_REQUIRE_TOOLS=1) but was not found; run scripts/install-tools"
        );
    }
    eprintln!("skipping: {name} not found; run scripts/install-tools to enable this test");
    None
}
