//! The real tools tests drive beside the sim (kubectl 1.35 and helm 4, from
//! `scripts/install-tools`), and how a test without them behaves: skipped with a message, or
//! failed when `PADDOCK_REQUIRE_TOOLS=1` (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether a missing tool fails the test instead of skipping it (`PADDOCK_REQUIRE_TOOLS=1`).
pub fn required() -> bool {
    std::env::var("PADDOCK_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// The real `tool` (`kubectl`, `helm` or `helm3`): the repository's `.tools/bin/TOOL` (installed
/// on first use by `scripts/install-tools`); for kubectl also one on `PATH` (never for helm: the
/// one on `PATH` may be the sim's fake). `None` when there is none.
pub fn find(tool: &str) -> Option<PathBuf> {
    let local = workspace().join(".tools/bin").join(tool);
    if !local.is_file() {
        let _ = Command::new(workspace().join("scripts/install-tools")).status();
    }
    if local.is_file() {
        return Some(local);
    }
    let on_path = tool == "kubectl"
        && Command::new(tool)
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
    on_path.then(|| PathBuf::from(tool))
}

/// The real `tool` for a test: when there is none, the test skips (it gets `None` and a
/// message is printed), or panics under `PADDOCK_REQUIRE_TOOLS=1`.
fn for_test(tool: &str) -> Option<PathBuf> {
    if let Some(p) = find(tool) {
        return Some(p);
    }
    if required() {
        panic!(
            "{tool} is required (PADDOCK_REQUIRE_TOOLS=1) but was not found; run scripts/install-tools"
        );
    }
    eprintln!("skipping: {tool} not found; run scripts/install-tools to enable this test");
    None
}

/// The real kubectl 1.35 for a test (see [`for_test`]).
pub fn kubectl() -> Option<PathBuf> {
    for_test("kubectl")
}

/// The real helm 4 for a test (see [`for_test`]).
pub fn helm() -> Option<PathBuf> {
    for_test("helm")
}

/// The real Helm 3 (3.19, as `helm3`) for a test (see [`for_test`]).
pub fn helm3() -> Option<PathBuf> {
    for_test("helm3")
}
