//! The real tools tests drive beside the sim (kubectl 1.35, from `scripts/install-tools`), and
//! how a test without them behaves: skipped with a message, or failed when
//! `PADDOCK_REQUIRE_TOOLS=1` (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real kubectl: the repository's `.tools/bin/kubectl` (installed on first use), else one
/// on `PATH`. When there is none, a test skips (it gets `None` and a message is printed), or
/// panics under `PADDOCK_REQUIRE_TOOLS=1`.
pub fn kubectl() -> Option<PathBuf> {
    let local = workspace().join(".tools/bin/kubectl");
    if !local.is_file() {
        let _ = Command::new(workspace().join("scripts/install-tools")).status();
    }
    if local.is_file() {
        return Some(local);
    }
    let on_path = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Some(PathBuf::from("kubectl"));
    }
    if std::env::var("PADDOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!(
            "kubectl is required (PADDOCK_REQUIRE_TOOLS=1) but was not found; run scripts/install-tools"
        );
    }
    eprintln!("skipping: kubectl not found; run scripts/install-tools to enable this test");
    None
}
