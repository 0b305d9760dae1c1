//! What the sim's tests of the fake tools share: a fresh sim home with `k3d` and `helm` linked
//! to the sim binary, the tools run as processes in it, and its clusters deleted at the end.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Home {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        assert!(
            Command::new(env!("CARGO_BIN_EXE_paddock-sim"))
                .arg("link")
                .arg(&bin)
                .status()
                .expect("link")
                .success()
        );
        Self { dir, bin }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default kubeconfig of the tools run here (`$KUBECONFIG`): what k3d merges into and
    /// what helm reads.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.path().join("kubeconfig")
    }

    /// A fake tool's command line, its environment pointing at this home.
    pub fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.args(args)
            .env("PADDOCK_SIM_HOME", self.path())
            .env("PADDOCK_SIM_DOCKER", "0")
            .env("HOME", self.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("KUBECONFIG", self.kubeconfig_path());
        c
    }

    /// `k3d cluster create NAME` (without touching the default kubeconfig); its kubeconfig is
    /// written to `kc-NAME` here, and to [`Self::kubeconfig_path`] for the tools run here.
    pub fn cluster(&self, name: &str) -> PathBuf {
        let cfg = format!(
            "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: {name}\noptions:\n  kubeconfig:\n    updateDefaultKubeconfig: false\n"
        );
        let out = self.run(
            "k3d",
            &["cluster", "create", name, "--config", "-"],
            Some(&cfg),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kc = self.run("k3d", &["kubeconfig", "get", name], None);
        let own = self.path().join(format!("kc-{name}"));
        std::fs::write(&own, &kc.stdout).expect("kubeconfig");
        std::fs::write(self.kubeconfig_path(), &kc.stdout).expect("kubeconfig");
        own
    }

    /// Run a fake tool to completion, `stdin` piped in.
    pub fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = self
            .command(tool, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(t) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(t.as_bytes())
                .expect("stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.run("k3d", &["cluster", "delete", "--all"], None);
    }
}
