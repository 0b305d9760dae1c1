//! Kubernetes' syntax rules for names, labels and annotations (apimachinery's validation), and
//! container image references (the distribution reference grammar), so a value the API server
//! or the runtime would refuse is refused before anything runs.

/// A DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, alphanumeric at both ends of each
/// label, at most 253 characters (most object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(super::is_dns_label)
}

/// A DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn is_dns1035_label(s: &str) -> bool {
    super::is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A path segment name (RBAC objects): anything but `.`, `..`, `/` and `%`.
pub fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

/// The "qualified name" part of a label or annotation key, and a label value's charset:
/// alphanumerics, `-`, `_`, `.`, alphanumeric at both ends, at most 63 characters.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// What is wrong with a label or annotation key, if anything: `[prefix/]name`, the prefix a
/// DNS subdomain.
pub fn key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Some(format!(
            "the prefix `{p}` of key `{key}` is not a DNS subdomain (lowercase letters, digits, `-` and `.`)"
        ));
    }
    if !is_qualified_name_part(name) {
        return Some(format!(
            "key `{key}`: the name part must be 1-63 characters of letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
        ));
    }
    None
}

/// What is wrong with a label value, if anything: empty, or a qualified name part.
pub fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_qualified_name_part(value)).then(|| {
        format!(
            "label value `{value}` must be at most 63 characters of letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
        )
    })
}

/// What is wrong with an image reference, if anything: `[registry[:port]/]path[:tag][@digest]`
/// with a lowercase path.
pub fn image_problem(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Some(format!(
            "`{image}` is not an image reference: it is empty or has spaces"
        ));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Some(format!(
                "`{image}`: the digest must look like `sha256:<64 hex digits>`"
            ));
        }
    }
    // A tag follows the last `:` after the last `/`.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Some(format!(
                "`{image}`: the tag `{t}` must be 1-128 letters, digits, `_`, `.` and `-`"
            ));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first part with a `.` or `:`, or `localhost`, is a registry host.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
    };
    if let Some(bad) = parts.iter().find(|c| !component_ok(c)) {
        return Some(format!(
            "`{image}`: the repository part `{bad}` must be lowercase letters, digits and separators (`.`, `_`, `-`)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values_follow_apimachinery() {
        for ok in ["app", "app.kubernetes.io/name", "a_b.c-d", "x/y"] {
            assert_eq!(key_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-app",
            "app-",
            "Example.COM/x",
            "a/b/c",
            &"k".repeat(64),
        ] {
            assert!(key_problem(bad).is_some(), "{bad}");
        }
        for ok in ["", "v1", "1.0", "a-b_c.d"] {
            assert_eq!(label_value_problem(ok), None, "{ok}");
        }
        for bad in ["v 1", "-x", "x.", "a/b", &"v".repeat(64)] {
            assert!(label_value_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "docker.io/library/nginx:1.27-alpine",
            "localhost:5000/my/app:dev",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "registry.example.com/web:0123abcd",
        ] {
            assert_eq!(image_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "my app",
            "My/App:dev",
            "nginx:",
            "nginx:-x",
            "a@sha256:zz",
            "a//b",
        ] {
            assert!(image_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn names_by_kind() {
        assert!(is_dns_subdomain("web.v1"));
        assert!(!is_dns_subdomain("Web"));
        assert!(is_dns1035_label("web"));
        assert!(!is_dns1035_label("1web"));
        assert!(is_path_segment("system:controller:x"));
        assert!(!is_path_segment("a/b"));
    }
}
