//! The engine every operation runs on: the journal that makes operations resumable, the
//! per-cluster locks that keep two of them apart, and the events they report (`events`).
//!
//! Uses: nothing above it; it is generic over what a step does.

pub mod events;
pub mod journal;
pub mod lock;

/// An error and its causes as one line — "failed to x: y: z" — for events, journals and the
/// CLI. A cause whose text the line already holds is not repeated (some tools' messages quote
/// their cause).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("failed to install {0}")]
    struct Outer(&'static str, #[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("helm failed: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn a_chain_names_every_cause_once() {
        let e = Outer("istiod", Inner(std::io::Error::other("disk full")));
        assert_eq!(
            super::chain(&e),
            "failed to install istiod: helm failed: disk full"
        );
    }
}
