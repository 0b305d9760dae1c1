//! The engine every operation runs on: the journal that makes operations resumable, the
//! per-cluster locks that keep two of them apart, the events they report (`events`), and the
//! clock they read wall time from (`clock`).
//!
//! Uses: nothing above it; it is generic over what a step does.

pub mod clock;
pub mod events;
pub mod journal;
pub mod lock;

/// An error and its causes as one line: "failed to x: because y: because z", for the places
/// that show or store an error as text (the CLI, the journal, upgrade's step results).
///
/// The drivers' errors quote their own cause in their message, so a cause whose text the
/// line already holds is left out. The chain ends at the Kubernetes driver's error: it says
/// what a user needs to know, and on a refused credential it keeps the raw API answer out of
/// the message on purpose.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut last = e;
    while let Some(cause) = last.source() {
        if last.is::<crate::drivers::kube::Error>() {
            break;
        }
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = cause;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("failed to restart web")]
        Restart(#[source] Middle),
    }

    #[derive(Debug, thiserror::Error)]
    enum Middle {
        #[error("failed to read pods")]
        Read(#[source] std::io::Error),
        /// Quotes its cause, as the drivers' errors do.
        #[error("the command failed: {0}")]
        Quoting(#[source] std::io::Error),
    }

    fn io(text: &str) -> std::io::Error {
        std::io::Error::other(text.to_string())
    }

    #[test]
    fn chain_joins_each_cause_once() {
        let e = Outer::Restart(Middle::Read(io("connection refused")));
        assert_eq!(
            chain(&e),
            "failed to restart web: failed to read pods: connection refused"
        );
        let e = Outer::Restart(Middle::Quoting(io("exit status 1")));
        assert_eq!(
            chain(&e),
            "failed to restart web: the command failed: exit status 1"
        );
    }

    #[test]
    fn chain_ends_at_the_kubernetes_drivers_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to list pods")]
        struct List(#[source] crate::drivers::kube::Error);
        let e = List(crate::drivers::kube::Error::Timeout {
            what: "pods".into(),
            timeout: std::time::Duration::from_secs(3),
        });
        assert_eq!(
            chain(&e),
            "failed to list pods: timed out after 3s waiting for pods"
        );
    }
}
