//! Name grammars: Kubernetes DNS names, label keys and values, Spin variable names and
//! component ids. Each check returns `Err(reason)` in the words Kubernetes (or Spin) uses.

/// Longest DNS-1123 subdomain (object names of most kinds).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Longest DNS-1123 / DNS-1035 label and label name or value.
pub const LABEL_MAX: usize = 63;

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

// The shapes are checked bytewise: a non-ASCII character fails the same tests as its bytes.

/// One DNS-1123 label without the length check: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn label_shape(s: &str) -> bool {
    label_bytes(s.as_bytes())
}

fn label_bytes(s: &[u8]) -> bool {
    s.first().is_some_and(|&b| is_lower_alnum(b))
        && s.last().is_some_and(|&b| is_lower_alnum(b))
        && s.iter().all(|&b| is_lower_alnum(b) || b == b'-')
}

/// RFC 1123 subdomain, as Kubernetes object names (Secrets, ConfigMaps, ServiceAccounts).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if s.as_bytes().split(|&b| b == b'.').all(label_bytes) {
        Ok(())
    } else {
        Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (e.g. \
             'example.com')"
                .to_string(),
        )
    }
}

/// RFC 1123 label (volume names, Kubernetes label-like names).
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > LABEL_MAX {
        return Err(format!("must be no more than {LABEL_MAX} characters"));
    }
    if label_shape(s) {
        Ok(())
    } else {
        Err(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
             '-', and must start and end with an alphanumeric character (e.g. 'my-name')"
                .to_string(),
        )
    }
}

/// RFC 1035 label (Service names): like a 1123 label but starting with a letter.
pub fn dns1035_label(s: &str) -> Result<(), String> {
    if s.len() > LABEL_MAX {
        return Err(format!("must be no more than {LABEL_MAX} characters"));
    }
    if label_shape(s) && s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
             with an alphabetic character, and end with an alphanumeric character (e.g. \
             'my-name')"
                .to_string(),
        )
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: the name part of a qualified name, and a
/// non-empty label value.
fn qualified_shape(s: &str) -> bool {
    let s = s.as_bytes();
    s.first().is_some_and(u8::is_ascii_alphanumeric)
        && s.last().is_some_and(u8::is_ascii_alphanumeric)
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63 characters.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".to_string());
        }
        dns1123_subdomain(prefix).map_err(|e| format!("prefix part {e}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".to_string());
    }
    if name.len() > LABEL_MAX {
        return Err(format!(
            "name part must be no more than {LABEL_MAX} characters"
        ));
    }
    if !qualified_shape(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and \
                    must start and end with an alphanumeric character (e.g. 'MyName', \
                    'my.name', or '123-abc')"
                .to_string(),
        );
    }
    Ok(())
}

/// A label value: empty, or ≤ 63 characters of the qualified-name shape.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.len() > LABEL_MAX {
        return Err(format!("must be no more than {LABEL_MAX} characters"));
    }
    if s.is_empty() || qualified_shape(s) {
        Ok(())
    } else {
        Err(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character"
                .to_string(),
        )
    }
}

/// Spin variable names (spin-expressions `Key`): lowercase letter first, then lowercase letters,
/// digits and single underscores, ending with a letter or digit.
pub fn spin_variable_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "invalid character {c:?}: Spin variable names may contain only lowercase letters, \
             digits and underscores"
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".to_string());
    }
    if s.ends_with('_') {
        return Err("must end with a lowercase letter or digit".to_string());
    }
    if s.contains("__") {
        return Err("must not contain consecutive underscores".to_string());
    }
    Ok(())
}

/// Spin component ids (spin-serde `KebabId`): words separated by single `-`, each word starting
/// with an ASCII letter, alphanumeric, and all lowercase or all UPPERCASE.
pub fn spin_component_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    for word in s.split('-') {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err("'-'-separated words must not be empty".to_string());
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "'-'-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        for c in chars {
            if c.is_ascii_digit() {
                continue;
            }
            if !c.is_ascii_alphanumeric() {
                return Err(format!(
                    "'-'-separated words may only contain alphanumeric ASCII; got {c:?}"
                ));
            }
            if c.is_ascii_uppercase() != upper {
                return Err(format!(
                    "'-'-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for ok in ["a", "my-secret", "a.b.c", "0abc", "x1.y-2"] {
            assert!(dns1123_subdomain(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a..b",
            "a_b",
            ".a",
            "a.",
            long.as_str(),
        ] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(dns1123_label("data-1").is_ok());
        assert!(dns1123_label("1data").is_ok());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1035_label("app").is_ok());
        assert!(dns1035_label("1app").is_err());
        assert!(dns1035_label("app-").is_err());
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "tier",
            "app.kubernetes.io/name",
            "prometheus.io/scrape",
            "A_b.c-1",
            "core.spinkube.dev/app.x.status",
        ] {
            assert!(qualified_name(ok).is_ok(), "{ok}");
        }
        let long = format!("x/{}", "a".repeat(64));
        for bad in [
            "",
            "/a",
            "a/",
            "Ex ample/a",
            "-a",
            "a-",
            "a/b/c",
            long.as_str(),
        ] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "frontend", "v1.2_3-x"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-a", "a b", "a/b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }

    /// The bytewise shapes agree with the former char-by-char ones on every string of up to
    /// four characters over an alphabet that exercises them (non-ASCII included).
    #[test]
    fn bytewise_shapes_agree_with_chars() {
        fn label_chars(s: &str) -> bool {
            let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            !s.is_empty()
                && s.chars().all(|c| lower(c) || c == '-')
                && s.starts_with(lower)
                && s.ends_with(lower)
        }
        fn qualified_chars(s: &str) -> bool {
            let edge = |c: char| c.is_ascii_alphanumeric();
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && s.starts_with(edge)
                && s.ends_with(edge)
        }
        let alphabet = ['a', '1', '-', '.', '_', 'A', 'é', '€', ' '];
        let mut strings = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(last.iter().cloned());
        }
        for s in &strings {
            assert_eq!(label_shape(s), label_chars(s), "{s:?}");
            assert_eq!(qualified_shape(s), qualified_chars(s), "{s:?}");
            assert_eq!(
                dns1123_subdomain(s).is_ok(),
                s.split('.').all(label_chars),
                "{s:?}"
            );
        }
    }

    #[test]
    fn variable_names() {
        for ok in ["a", "greetee", "log_level", "a1_b2", "db_password"] {
            assert!(spin_variable_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Greetee", "1a", "_a", "a_", "a__b", "a-b", "a.b"] {
            assert!(spin_variable_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn component_ids() {
        for ok in ["hello", "goodbye", "hello-world", "a1-b2", "MIXED-case"] {
            assert!(spin_component_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "1a", "a-1b", "Hello", "a_b", "a.b"] {
            assert!(spin_component_id(bad).is_err(), "{bad}");
        }
    }
}
