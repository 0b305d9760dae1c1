//! The tool children paddock notes as running (`<state>/clusters/<cluster>/running/<pid>`)
//! and the helm runs the sim logged: what kill tests watch and count.

use serde_json::Value;

use super::World;

/// A helm child paddock noted as running (`<state>/clusters/<cluster>/running/<pid>`).
#[derive(Debug, Clone)]
pub struct Note {
    pub pid: u32,
    pub argv: Vec<String>,
}

impl Note {
    /// Is the noted process still running, and not another one that reuses its pid?
    pub fn alive(&self) -> bool {
        let Ok(raw) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        argv == self.argv && !zombie
    }
}

/// The running helm child of paddock whose command line has all of `words`, if noted.
pub fn helm_note(w: &World, cluster: &str, words: &[&str]) -> Option<Note> {
    let dir = w
        .state
        .path()
        .join("clusters")
        .join(cluster)
        .join("running");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
        // A note that a child is about to start names paddock's pid, not the child's.
        if v["starting"] == true {
            return None;
        }
        let argv: Vec<String> = v["argv"]
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let pid = u32::try_from(v["pid"].as_u64()?).ok()?;
        words
            .iter()
            .all(|x| argv.iter().any(|a| a == x))
            .then_some(Note { pid, argv })
    })
}

/// The helm runs logged since `from` (the sim logs a run when it ends; a helm killed with
/// its group is never logged) whose command line has all of `words`.
pub fn helm_runs(w: &World, from: usize, words: &[&str]) -> usize {
    w.invocations()[from..]
        .iter()
        .filter(|i| i.tool == "helm" && words.iter().all(|x| i.args.iter().any(|a| a == x)))
        .count()
}

/// The helm runs logged since `from`: exit code and command line (for failure messages).
pub fn helm_log(w: &World, from: usize) -> Vec<String> {
    w.invocations()[from..]
        .iter()
        .filter(|i| i.tool == "helm")
        .map(|i| format!("{} {}", i.code, i.args.join(" ")))
        .collect()
}
