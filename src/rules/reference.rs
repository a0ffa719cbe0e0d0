//! OCI image references, per the distribution/reference grammar:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] path-component ['/' path-component]*
//! domain           := host [':' port-number]
//! host             := domain-component ['.' domain-component]* | '[' IPv6 ']'
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" hex   (algorithm components /[A-Za-z][A-Za-z0-9]*/
//!                                          joined by [+._-]; hex ≥ 32, sha256 exactly 64)
//! ```
//!
//! The first component is a domain when it contains `.` or `:` or is `localhost` (otherwise the
//! reference is a Docker Hub short name, as container runtimes normalize it).

/// The parts of a valid reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    pub domain: Option<&'a str>,
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Longest repository name (domain and path) distribution accepts.
const NAME_MAX: usize = 255;

/// Parses an image reference, explaining the first problem found.
pub fn parse(s: &str) -> Result<Reference<'_>, String> {
    match accept(s) {
        Some(reference) => Ok(reference),
        None => parse_and_explain(s),
    }
}

/// The common case in one bytewise pass: a valid reference without a digest or an IPv6
/// registry. `None` leaves the string to [`parse_and_explain`], which accepts the same valid
/// references (and the rest) and words every problem.
pub(crate) fn accept(s: &str) -> Option<Reference<'_>> {
    let bytes = s.as_bytes();
    let (mut first_slash, mut last_slash) = (None, None);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                first_slash.get_or_insert(i);
                last_slash = Some(i);
            }
            // A digest, whitespace, control or non-ASCII: the general path.
            b'@' | ..=b' ' | 0x7f.. => return None,
            _ => {}
        }
    }
    // A ':' after the last '/' starts the tag (an earlier one is a registry port).
    let tag_from = last_slash.map_or(0, |i| i + 1);
    let (name, tag) = match bytes[tag_from..].iter().position(|&b| b == b':') {
        Some(i) => (&s[..tag_from + i], Some(&s[tag_from + i + 1..])),
        None => (s, None),
    };
    if name.is_empty() || name.len() > NAME_MAX {
        return None;
    }
    // `first_slash` lies in `name` (the tag starts after the last '/').
    let (domain, path) = match first_slash {
        Some(i) => {
            let first = &name[..i];
            if first.starts_with('[') {
                return None;
            }
            if first.contains(['.', ':']) || first == "localhost" {
                check_domain(first).ok()?;
                (Some(first), &name[i + 1..])
            } else {
                (None, name)
            }
        }
        None => (None, name),
    };
    if !path.as_bytes().split(|&b| b == b'/').all(path_component_ok) {
        return None;
    }
    if let Some(t) = tag {
        check_tag(t).ok()?;
    }
    Some(Reference {
        domain,
        path,
        tag,
        digest: None,
    })
}

/// The reference parse, explaining the first problem found.
pub(crate) fn parse_and_explain(s: &str) -> Result<Reference<'_>, String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    // ASCII (every valid reference) is checked bytewise: there whitespace or control means
    // 0x00..=0x20 or 0x7f.
    let suspicious = !s.is_ascii() || s.bytes().any(|b| b <= b' ' || b == 0x7f);
    if suspicious && let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not contain whitespace or control characters ({c:?})"
        ));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    // A ':' after the last '/' starts the tag (an earlier one is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err("repository name must not be empty".to_string());
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters"
        ));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            (Some(first), remainder)
        }
        _ => (None, name),
    };
    if let Some(d) = domain {
        check_domain(d)?;
    }
    if path.is_empty() {
        return Err("repository path must not be empty".to_string());
    }
    // Split at '/' found bytewise (an ASCII byte is always a char boundary).
    let mut rest = path;
    loop {
        match rest.bytes().position(|b| b == b'/') {
            Some(i) => {
                check_path_component(&rest[..i])?;
                rest = &rest[i + 1..];
            }
            None => {
                check_path_component(rest)?;
                break;
            }
        }
    }
    if let Some(t) = tag {
        check_tag(t)?;
    }
    if let Some(d) = digest {
        check_digest(d)?;
    }
    Ok(Reference {
        domain,
        path,
        tag,
        digest,
    })
}

fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = d.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("invalid registry host {d:?}"))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("invalid registry IPv6 address {addr:?}"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("invalid registry host {d:?}"))?,
            ),
        };
        (None, port)
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(host) = host {
        // Bytewise: a non-ASCII character fails the same tests as its bytes.
        let ok = !host.is_empty()
            && host.as_bytes().split(|&b| b == b'.').all(|c| {
                !c.is_empty()
                    && c.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                    && c.first() != Some(&b'-')
                    && c.last() != Some(&b'-')
            });
        if !ok {
            return Err(format!("invalid registry host {host:?}"));
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("invalid registry port {port:?}"));
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), String> {
    // One bytewise pass accepts every valid component; the checks below word the first problem.
    if path_component_ok(c.as_bytes()) {
        return Ok(());
    }
    word_path_component(c)
}

/// The first problem with a path component (`Ok` only if there is none).
fn word_path_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("repository path components must not be empty".to_string());
    }
    if c.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "repository name must be lowercase (path component {c:?})"
        ));
    }
    if let Some(bad) = c.chars().find(|ch| {
        !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
    }) {
        return Err(format!(
            "invalid character {bad:?} in repository path component {c:?}"
        ));
    }
    // Separators: one '.', one '_', two '_', or any run of '-', always between alphanumerics.
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "repository path component {c:?} must start and end with a lowercase letter or digit"
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "invalid separator {sep:?} in repository path component {c:?}"
            ));
        }
    }
    Ok(())
}

/// Whether `c` is a valid path component: lowercase alphanumeric runs joined by one '.', one or
/// two '_', or any run of '-'.
fn path_component_ok(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !c.first().is_some_and(|&b| alnum(b)) || !c.last().is_some_and(|&b| alnum(b)) {
        return false;
    }
    // The separator run since the last alphanumeric: its byte and length (0: none).
    let (mut sep, mut len) = (0u8, 0usize);
    for &b in c {
        if alnum(b) {
            len = 0;
            continue;
        }
        let ok = match (b, len) {
            (b'.' | b'_' | b'-', 0) => true,
            (b'_', 1) => sep == b'_',
            (b'-', _) => sep == b'-',
            _ => false,
        };
        if !ok {
            return false;
        }
        sep = b;
        len += 1;
    }
    true
}

fn check_tag(t: &str) -> Result<(), String> {
    // Bytewise: a non-ASCII character fails the same tests as its bytes.
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if t.is_empty() {
        return Err("tag must not be empty (remove the ':' or name a tag)".to_string());
    }
    if t.len() > 128 {
        return Err("tag must not be more than 128 characters".to_string());
    }
    let bytes = t.as_bytes();
    if !bytes.first().is_some_and(|&b| word(b))
        || !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
    {
        return Err(format!(
            "invalid tag {t:?}: a tag is up to 128 letters, digits, '_', '.' or '-', not \
             starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<(), String> {
    let (algorithm, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {d:?}: expected algorithm:hex"))?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|c| {
            c.starts_with(|c: char| c.is_ascii_alphabetic())
                && c.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !algorithm_ok {
        return Err(format!("invalid digest algorithm {algorithm:?}"));
    }
    if hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid digest {d:?}: the hex part must be at least 32 hexadecimal characters"
        ));
    }
    let expected = match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(n) = expected
        && hex.len() != n
    {
        return Err(format!(
            "invalid {algorithm} digest: expected {n} hexadecimal characters, got {}",
            hex.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:4c7b4f2d8e1a9f3b6c5d0e7a8b9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c";

    #[test]
    fn accepts_valid_references() {
        let with_digest = format!("registry.example.com:5000/team/probed@{SHA}");
        let tag_and_digest = format!("ghcr.io/a/b:v1@{SHA}");
        for ok in [
            "nginx",
            "library/nginx:1.25",
            "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
            "localhost/app",
            "localhost:5000/app:latest",
            "[::1]:5000/app",
            "ghcr.io/endocrimes/spin-variabletester:container",
            "a/b__c/d-e---f/g.h_i:TAG_1.x-y",
            "Registry.Example.com/app:v1",
            with_digest.as_str(),
            tag_and_digest.as_str(),
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
        let r = parse(&tag_and_digest).unwrap();
        assert_eq!(r.domain, Some("ghcr.io"));
        assert_eq!(r.path, "a/b");
        assert_eq!(r.tag, Some("v1"));
        assert!(r.digest.is_some());
        assert_eq!(parse("nginx").unwrap().tag, None);
    }

    /// The one-pass acceptance accepts only what the general parse accepts, with the same
    /// parts: on every string of up to five characters over an alphabet of the grammar's
    /// delimiters, and on real references.
    #[test]
    fn one_pass_acceptance_agrees_with_the_general_parse() {
        let alphabet = ['a', '1', '.', '-', ':', '/', '@', 'A', '[', '_'];
        let mut strings = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(last.iter().cloned());
        }
        for real in [
            "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
            "localhost:5000/app:latest",
            "localhost/a/b",
            "nginx",
            "library/nginx:1.25",
            "Registry.Example.com/app:v1",
            "registry.example.com:5000/team/probed:v2",
            "-bad.io/a",
            "ghcr.io:port/a",
            "ghcr.io/a:.v1",
            "a/b__c/d-e---f/g.h_i:TAG_1.x-y",
        ] {
            strings.push(real.to_string());
        }
        let mut accepted = 0;
        for s in &strings {
            if let Some(r) = accept(s) {
                accepted += 1;
                assert_eq!(Ok(r), parse_and_explain(s), "{s:?}");
            }
        }
        assert!(accepted > 1000, "{accepted} of {} accepted", strings.len());
    }

    /// The bytewise acceptance agrees with the checks that word the problems, on every string
    /// of up to four characters over an alphabet that exercises each rule.
    #[test]
    fn bytewise_path_component_check_agrees() {
        let alphabet = ['a', '1', '.', '_', '-', 'A', '!', 'é'];
        let mut strings = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = strings
                .iter()
                .filter(|s| s.chars().count() == strings.last().map_or(0, |l| l.chars().count()))
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        assert!(strings.len() > 4000);
        for c in &strings {
            assert_eq!(
                path_component_ok(c.as_bytes()),
                word_path_component(c).is_ok(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_references() {
        for (bad, why) in [
            ("", "empty"),
            ("ghcr.io/<username>/<image>:<tag>", "invalid character '<'"),
            ("ghcr.io/Example/App:", "lowercase"),
            ("ghcr.io/example/app:", "tag must not be empty"),
            ("ghcr.io/example/App:v1", "lowercase"),
            ("ghcr.io/a b:v1", "whitespace"),
            ("ghcr.io/a:.v1", "invalid tag"),
            ("ghcr.io/a:-v1", "invalid tag"),
            ("ghcr.io//a", "must not be empty"),
            ("ghcr.io/a/", "must not be empty"),
            ("ghcr.io/a..b", "invalid separator"),
            ("ghcr.io/a___b", "invalid separator"),
            ("ghcr.io/-a", "start and end"),
            ("ghcr.io:port/a", "invalid registry port"),
            ("-ghcr.io/a", "invalid registry host"),
            ("ghcr.io/a@sha256:abc", "at least 32"),
            ("ghcr.io/a@sha256:", "at least 32"),
            ("ghcr.io/a@md5", "algorithm:hex"),
            (
                "ghcr.io/a@1sha:0123456789abcdef0123456789abcdef",
                "algorithm",
            ),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(parse(&long_tag).is_err());
        let sha_short = format!("a@sha256:{}", "a".repeat(40));
        assert!(parse(&sha_short).unwrap_err().contains("expected 64"));
        let long_name = "a/".repeat(128) + "a";
        assert!(parse(&long_name).is_err());
    }
}
