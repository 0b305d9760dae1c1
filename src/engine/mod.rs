//! The engine every operation runs on: the journal that makes operations resumable, the
//! per-cluster locks that keep two of them apart, and the events they report.
//!
//! Uses: nothing above it; it is generic over what a step does.

pub mod journal;
pub mod lock;

/// An error and its causes as one line ("failed to x: y: z"), as journal records and step
/// events carry it. A cause whose text the line already holds is not said twice (some
/// drivers' messages quote their cause as well as returning it from `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
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
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("disk full")]
        Full,
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("failed to write the journal")]
        Write(#[source] Inner),
        #[error("failed to write: {0}")]
        Quoting(#[source] Inner),
    }

    #[test]
    fn error_chain_appends_each_cause() {
        assert_eq!(
            error_chain(&Outer::Write(Inner::Full)),
            "failed to write the journal: disk full"
        );
    }

    #[test]
    fn error_chain_does_not_repeat_a_cause_the_message_quotes() {
        assert_eq!(
            error_chain(&Outer::Quoting(Inner::Full)),
            "failed to write: disk full"
        );
    }
}
