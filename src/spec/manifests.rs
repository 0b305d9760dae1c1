//! Workload manifests read as located documents: every object of every file a cluster lists in
//! `workloads`, each with the file and line of each of its fields, so checks can point at them.

use super::error::Diagnostic;
use super::yaml::{self, Located, Pos};
use serde_json::Value;

/// One object of a manifest file.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file, relative to the repository root.
    pub file: String,
    /// Which document of the file (0-based).
    pub index: usize,
    pub doc: Located,
}

impl Manifest {
    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.doc.value.pointer(pointer).and_then(Value::as_str)
    }

    pub fn kind(&self) -> Option<&str> {
        self.str_at("/kind")
    }

    pub fn api_version(&self) -> Option<&str> {
        self.str_at("/apiVersion")
    }

    pub fn name(&self) -> Option<&str> {
        self.str_at("/metadata/name")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }

    /// `Kind/name` (or what is known of it), for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.kind().unwrap_or("(no kind)"),
            self.name().unwrap_or("(no name)")
        )
    }
}

/// The documents of one file, each with its first line, split at `---` lines. A `---` line
/// is blanked rather than removed so columns and lines stay those of the file.
fn documents(text: &str) -> Vec<(u64, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1u64;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line == "...";
        if marker {
            if !current.trim().is_empty() {
                docs.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i as u64 + 1;
            // Content after `--- ` on the same line belongs to the next document.
            let rest = line.strip_prefix("---").unwrap_or("");
            current.push_str(&" ".repeat(line.len() - rest.len()));
            current.push_str(rest);
            current.push('\n');
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        docs.push((start, current));
    }
    docs
}

/// Parse a manifest file's text into its objects; a syntax error is a diagnostic at its line.
#[allow(clippy::result_large_err)] // one per bad file, built once
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, Diagnostic> {
    let mut out = Vec::new();
    for (index, (first, body)) in documents(text).into_iter().enumerate() {
        let content = body.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if !content {
            continue;
        }
        // Parse the document alone, positioned at its lines in the file.
        let padded = format!("{}{body}", "\n".repeat(first as usize - 1));
        let doc = yaml::parse(file, &padded).map_err(|e| Diagnostic {
            file: file.to_string(),
            line: e.pos.line,
            column: e.pos.column.max(1),
            field: String::new(),
            message: format!("not valid YAML: {}", e.message),
            help: Some("fix the YAML syntax; `---` separates objects".into()),
            severity: Default::default(),
            code: None,
        })?;
        if doc.value.is_null() {
            continue;
        }
        out.push(Manifest {
            file: file.to_string(),
            index,
            doc,
        });
    }
    Ok(out)
}

/// Where a document starts, for messages about the whole object.
pub fn start(m: &Manifest) -> Pos {
    m.doc
        .origins
        .get(&yaml::FieldPath::root())
        .map(|o| o.value)
        .unwrap_or(Pos { line: 1, column: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_the_lines_of_the_file() {
        let text = "# leading comment\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: a\n";
        let ms = parse("m.yaml", text).expect("parses");
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].describe(), "ConfigMap/b");
        let name = ms[1]
            .doc
            .origin(&yaml::FieldPath::parse("metadata.name"))
            .expect("origin");
        assert_eq!(name.value.line, 10);
    }

    #[test]
    fn a_syntax_error_in_a_later_document_names_its_line() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\nkind: [\n";
        let e = parse("m.yaml", text).expect_err("invalid");
        assert!(e.line >= 6, "{e}");
        assert!(e.message.starts_with("not valid YAML"), "{e}");
    }

    #[test]
    fn separators_and_comment_only_documents_make_no_objects() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n";
        let ms = parse("m.yaml", text).expect("parses");
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].name(), Some("a"));
    }
}
