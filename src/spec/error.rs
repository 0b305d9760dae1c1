//! Diagnostics for bad input: every problem names the file, line, column and field, says what
//! is wrong and, where it can, what to do about it.

use std::fmt;

use serde::Serialize;

use super::yaml::{FieldPath, Located, SyntaxError};

/// One problem with the user's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Dotted path of the offending field, e.g. `istio.gateways[0].values`.
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An error refuses the input; a warning is reported and the command goes on.
    pub severity: Severity,
    /// `istioctl analyze`'s code for the same finding (`IST0101`), or paddock's own (`PAD…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Which part of a map entry a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The key (unknown or forbidden fields).
    Key,
    /// The value (bad versions, bad cron expressions).
    Value,
}

impl Diagnostic {
    /// A diagnostic about `path` in `doc`, positioned at the path's key or value.
    pub fn at(doc: &Located, path: &FieldPath, anchor: Anchor, message: impl Into<String>) -> Self {
        let (file, pos) = match doc.origin(path) {
            Some(o) => {
                let pos = match anchor {
                    Anchor::Key if doc.origins.contains_key(path) => o.key.unwrap_or(o.value),
                    _ => o.value,
                };
                (o.file.clone(), pos)
            }
            None => (String::from("<unknown>"), Default::default()),
        };
        Self {
            file,
            line: pos.line,
            column: pos.column,
            field: path.to_string(),
            message: message.into(),
            help: None,
            severity: Severity::Error,
            code: None,
        }
    }

    /// A diagnostic about a whole file (it cannot be read, or it is not valid YAML).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line: 1,
            column: 1,
            field: FieldPath::root().to_string(),
            message: message.into(),
            help: None,
            severity: Severity::Error,
            code: None,
        }
    }

    pub fn syntax(file: &str, err: &SyntaxError) -> Self {
        Self {
            file: file.to_string(),
            line: err.pos.line,
            column: err.pos.column,
            field: FieldPath::root().to_string(),
            message: format!("invalid YAML: {}", err.message),
            help: Some("fix the YAML syntax at this position".to_string()),
            severity: Severity::Error,
            code: None,
        }
    }

    /// A warning: reported, and the command goes on.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// All problems found in one load; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<Diagnostic>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {d}", d.severity.word())?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<Diagnostic> for SpecErrors {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

/// The closest candidate to `word`, if any is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when something is close, otherwise the list of valid names.
pub fn suggest(word: &str, what: &str, candidates: &[&str]) -> String {
    suggest_with(word, candidates, |list| {
        if list.is_empty() {
            format!("no {what} is defined")
        } else {
            format!("valid {what}: {list}")
        }
    })
}

/// "did you mean `x`?" when something is close, otherwise `fallback` of the backticked list.
pub fn suggest_with(
    word: &str,
    candidates: &[&str],
    fallback: impl FnOnce(&str) -> String,
) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => fallback(
            &candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_and_strangers_get_the_list() {
        assert_eq!(
            did_you_mean("versoin", ["version", "tags"]),
            Some("version")
        );
        assert_eq!(did_you_mean("zzz", ["version", "tags"]), None);
        assert_eq!(
            suggest("zzz", "fields", &["a", "b"]),
            "valid fields: `a`, `b`"
        );
    }
}
