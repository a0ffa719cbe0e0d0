//! The runtime-config provider types Spin knows and the option keys each one reads
//! (from Spin's runtime-config structs: `spin-factor-key-value-*`, `spin-factor-sqlite`,
//! `spin-factor-llm`).

/// Which runtime-config table a provider belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    KeyValueStore,
    SqliteDatabase,
    LlmCompute,
}

impl Section {
    /// The TOML table name (`[key_value_store.<name>]`, ...).
    pub fn toml_name(self) -> &'static str {
        match self {
            Section::KeyValueStore => "key_value_store",
            Section::SqliteDatabase => "sqlite_database",
            Section::LlmCompute => "llm_compute",
        }
    }
}

/// `(section, type, option keys)`.
const KNOWN: &[(Section, &str, &[&str])] = &[
    (Section::KeyValueStore, "spin", &["path"]),
    (Section::KeyValueStore, "redis", &["url"]),
    (
        Section::KeyValueStore,
        "azure_cosmos",
        &["key", "account", "database", "container"],
    ),
    (
        Section::KeyValueStore,
        "aws_dynamo",
        &[
            "region",
            "table",
            "consistent_read",
            "access_key",
            "secret_key",
            "token",
        ],
    ),
    (Section::SqliteDatabase, "spin", &["path"]),
    (Section::SqliteDatabase, "libsql", &["url", "token"]),
    (Section::LlmCompute, "spin", &[]),
    (Section::LlmCompute, "remote_http", &["url", "auth_token"]),
];

/// The provider types known for `section`.
pub fn types(section: Section) -> Vec<&'static str> {
    KNOWN
        .iter()
        .filter(|(s, _, _)| *s == section)
        .map(|(_, t, _)| *t)
        .collect()
}

/// The option keys of `type_` in `section`, or `None` for a type Spin does not know.
pub fn keys(section: Section, type_: &str) -> Option<&'static [&'static str]> {
    KNOWN
        .iter()
        .find(|(s, t, _)| *s == section && *t == type_)
        .map(|(_, _, keys)| *keys)
}

/// A known key that `key` is probably a misspelling of: a small edit distance, or one contains
/// the other (`token` for `auth_token`). `None` when `key` is itself known or nothing is close.
pub fn likely_meant(key: &str, known: &[&'static str]) -> Option<&'static str> {
    if known.contains(&key) {
        return None;
    }
    let lower = key.to_ascii_lowercase().replace('-', "_");
    known.iter().copied().find(|k| {
        lower == *k
            || (key.len() >= 3 && (k.contains(lower.as_str()) || lower.contains(k)))
            || levenshtein(&lower, k) <= (k.len() / 4).max(1)
    })
}

/// Edit distance (insertions, deletions, substitutions) between two short strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_documented_providers() {
        assert_eq!(
            keys(Section::SqliteDatabase, "libsql"),
            Some(&["url", "token"][..])
        );
        assert_eq!(
            keys(Section::LlmCompute, "remote_http"),
            Some(&["url", "auth_token"][..])
        );
        assert!(keys(Section::KeyValueStore, "memcached").is_none());
        assert!(types(Section::KeyValueStore).contains(&"azure_cosmos"));
    }

    #[test]
    fn spots_misspellings_but_not_unrelated_keys() {
        let llm = keys(Section::LlmCompute, "remote_http").unwrap();
        assert_eq!(likely_meant("token", llm), Some("auth_token"));
        assert_eq!(likely_meant("auth-token", llm), Some("auth_token"));
        assert_eq!(likely_meant("authtoken", llm), Some("auth_token"));
        assert_eq!(likely_meant("URL", llm), Some("url"));
        assert_eq!(likely_meant("uri", llm), Some("url"));
        assert_eq!(likely_meant("url", llm), None);
        assert_eq!(likely_meant("timeout", llm), None);
        let cosmos = keys(Section::KeyValueStore, "azure_cosmos").unwrap();
        assert_eq!(likely_meant("acount", cosmos), Some("account"));
        assert_eq!(likely_meant("region", cosmos), None);
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("abc", "abc"), 0);
    }
}
