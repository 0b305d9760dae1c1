//! `paddock.yaml`'s `tools:` download settings, and the same checks for their `PADDOCK_*`
//! variables: each value parsed here, or refused with what to use instead.

use super::super::error::{Anchor, Diagnostic};
use super::super::types::ToolPaths;
use super::super::yaml::Located;
use super::at;

/// A version of `tool` paddock can drive and download: semver (a leading `v` is allowed),
/// k3d 5.x, Helm 3.x or 4.x. Returned without the `v`.
pub fn version(tool: &str, text: &str) -> Result<semver::Version, String> {
    let v = semver::Version::parse(text.strip_prefix('v').unwrap_or(text))
        .map_err(|_| format!("write a release version such as `{}`", example(tool)))?;
    let fits = match tool {
        "k3d" => v.major == 5,
        _ => v.major == 3 || v.major == 4,
    };
    if !fits {
        let want = if tool == "k3d" {
            "k3d 5.x"
        } else {
            "Helm 3.x or 4.x"
        };
        return Err(format!(
            "paddock drives {want}; use such a version, e.g. `{}`",
            example(tool)
        ));
    }
    Ok(v)
}

fn example(tool: &str) -> &'static str {
    if tool == "k3d" { "5.9.0" } else { "4.1.4" }
}

/// A base URL downloads come from: http:// or https:// with a host, no query or fragment.
pub fn mirror(text: &str) -> Result<(), &'static str> {
    let help = "use an http:// or https:// base URL such as `https://get.helm.sh` (no query)";
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or(help)?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || text.contains(['?', '#', ' ']) {
        return Err(help);
    }
    Ok(())
}

/// Whether downloads are on, from a variable's text (`1`/`true`/`yes`, `0`/`false`/`no`).
pub fn switch(text: &str) -> Result<bool, &'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("use 1 or 0 (true or false)"),
    }
}

/// The `tools:` section of `paddock.yaml`, located.
pub(in crate::spec) fn settings(doc: &Located, t: &ToolPaths, problems: &mut Vec<Diagnostic>) {
    for (tool, value) in [("k3d", &t.versions.k3d), ("helm", &t.versions.helm)] {
        if let Some(v) = value
            && let Err(help) = version(tool, v)
        {
            let field = format!("tools.versions.{tool}");
            let message = format!("invalid {tool} version `{v}`");
            problems.push(at(doc, &field, Anchor::Value, message).with_help(help));
        }
    }
    for (tool, value) in [("k3d", &t.mirrors.k3d), ("helm", &t.mirrors.helm)] {
        if let Some(v) = value
            && let Err(help) = mirror(v)
        {
            let field = format!("tools.mirrors.{tool}");
            let message = format!("invalid {tool} mirror `{v}`");
            problems.push(at(doc, &field, Anchor::Value, message).with_help(help));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_be_ones_paddock_drives() {
        assert_eq!(version("k3d", "v5.9.0").expect("ok").to_string(), "5.9.0");
        assert!(
            version("k3d", "4.4.8")
                .expect_err("old")
                .contains("k3d 5.x")
        );
        assert!(
            version("helm", "2.17.0")
                .expect_err("old")
                .contains("Helm 3.x or 4.x")
        );
        assert!(
            version("helm", "latest")
                .expect_err("text")
                .contains("4.1.4")
        );
    }

    #[test]
    fn mirrors_are_http_base_urls() {
        assert!(mirror("https://get.helm.sh").is_ok());
        assert!(mirror("http://127.0.0.1:8000/k3d").is_ok());
        for bad in ["ftp://x", "get.helm.sh", "https://", "https://h/?a=1"] {
            assert!(mirror(bad).is_err(), "{bad}");
        }
        assert_eq!(switch("0"), Ok(false));
        assert_eq!(switch("TRUE"), Ok(true));
        assert!(switch("maybe").is_err());
    }
}
