//! Per-route header rules: `request_headers` / `response_headers =
//! { set = { "x-a" = "1" }, add = { "x-b" = "2" }, remove = ["x-c"] }`.
//!
//! Names and values are parsed when the configuration loads; applying the rules clones
//! them into the map (reference-counted, no copy of the text).

use std::fmt;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Fields the proxy manages itself (framing and hop-by-hop): rules may not touch them.
static MANAGED: [HeaderName; 8] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Header edits applied to a request before it goes upstream, or to a response before it
/// goes to the client: `remove`, then `set` (replacing every existing value), then `add`
/// (appending another value). A name appears in at most one of the three.
#[derive(Clone, Debug, Default)]
pub struct HeaderRules {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// Header rules that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRules(String);

impl HeaderRules {
    /// Rules from their parts; refuses a name listed twice and the fields the proxy manages
    /// (`connection`, `content-length`, `keep-alive`, `proxy-connection`, `te`, `trailer`,
    /// `transfer-encoding`, `upgrade`).
    pub fn new(
        set: Vec<(HeaderName, HeaderValue)>,
        add: Vec<(HeaderName, HeaderValue)>,
        remove: Vec<HeaderName>,
    ) -> Result<Self, InvalidRules> {
        let names = set
            .iter()
            .map(|(n, _)| n)
            .chain(add.iter().map(|(n, _)| n))
            .chain(&remove);
        for (i, name) in names.clone().enumerate() {
            check_name(name)?;
            if names.clone().take(i).any(|earlier| earlier == name) {
                return Err(InvalidRules(format!(
                    "header `{name}` is listed more than once in set/add/remove"
                )));
            }
        }
        Ok(Self { set, add, remove })
    }

    /// True when there is nothing to do.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the rules to `headers`.
    #[inline]
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

fn check_name(name: &HeaderName) -> Result<(), InvalidRules> {
    if MANAGED.contains(name) {
        return Err(InvalidRules(format!(
            "header `{name}` is managed by the proxy (framing or hop-by-hop) and cannot be edited"
        )));
    }
    Ok(())
}

/// A header name in a rule.
struct Name(HeaderName);

/// A header value in a rule.
struct Value(HeaderValue);

/// `{ "name" = "value", ... }` in order, each name once (case-insensitively).
#[derive(Default)]
struct Pairs(Vec<(HeaderName, HeaderValue)>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    set: Pairs,
    #[serde(default)]
    add: Pairs,
    #[serde(default)]
    remove: Vec<Name>,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let name = HeaderName::from_bytes(text.as_bytes())
            .map_err(|_| de::Error::custom(format!("invalid header name `{text}`")))?;
        check_name(&name).map_err(de::Error::custom)?;
        Ok(Self(name))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let value = HeaderValue::from_str(&text)
            .ok()
            .filter(|_| text.is_ascii())
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid header value {text:?}: only visible ASCII, spaces and tabs"
                ))
            })?;
        Ok(Self(value))
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;

        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a table of header names to values, such as { "x-a" = "1" }"#)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs: Vec<(HeaderName, HeaderValue)> = Vec::new();
                while let Some(Name(name)) = map.next_key()? {
                    let Value(value) = map.next_value()?;
                    if pairs.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format!(
                            "header `{name}` is listed twice (names are case-insensitive)"
                        )));
                    }
                    pairs.push((name, value));
                }
                Ok(Pairs(pairs))
            }
        }

        deserializer.deserialize_map(PairsVisitor)
    }
}

impl<'de> Deserialize<'de> for HeaderRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(deserializer)?;
        Self::new(
            raw.set.0,
            raw.add.0,
            raw.remove.into_iter().map(|n| n.0).collect(),
        )
        .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Result<HeaderRules, String> {
        #[derive(Deserialize)]
        struct T {
            r: HeaderRules,
        }
        toml::from_str::<T>(toml_text)
            .map(|t| t.r)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn remove_then_set_then_add() {
        let r = rules(
            r#"r = { set = { "X-Env" = "prod", "x-empty" = "" }, add = { "x-tag" = "b" }, remove = ["x-secret"] }"#,
        )
        .unwrap();
        assert!(!r.is_empty());
        let mut h = HeaderMap::new();
        h.append("x-env", HeaderValue::from_static("dev"));
        h.append("x-env", HeaderValue::from_static("test"));
        h.append("x-tag", HeaderValue::from_static("a"));
        h.append("x-secret", HeaderValue::from_static("s1"));
        h.append("x-secret", HeaderValue::from_static("s2"));
        h.append("x-kept", HeaderValue::from_static("k"));
        r.apply(&mut h);
        let all =
            |n: &str| -> Vec<&str> { h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
        assert_eq!(all("x-env"), ["prod"], "set replaces every value");
        assert_eq!(all("x-empty"), [""]);
        assert_eq!(all("x-tag"), ["a", "b"], "add appends");
        assert!(all("x-secret").is_empty(), "remove drops every value");
        assert_eq!(all("x-kept"), ["k"]);
    }

    #[test]
    fn empty_rules_change_nothing() {
        let r = rules("r = {}").unwrap();
        assert!(r.is_empty());
        let mut h = HeaderMap::new();
        h.insert("x", HeaderValue::from_static("1"));
        r.apply(&mut h);
        assert_eq!(h.len(), 1);
        assert!(HeaderRules::default().is_empty());
    }

    #[test]
    fn bad_rules_are_refused() {
        for (bad, says) in [
            (
                r#"r = { set = { "x a" = "1" } }"#,
                "invalid header name `x a`",
            ),
            (
                r#"r = { add = { "x-a" = "caf\u00e9" } }"#,
                "invalid header value",
            ),
            (
                r#"r = { set = { "x-a" = "a\nb" } }"#,
                "invalid header value",
            ),
            (r#"r = { remove = ["bad:name"] }"#, "invalid header name"),
            (
                r#"r = { set = { "X-A" = "1", "x-a" = "2" } }"#,
                "listed twice",
            ),
            (
                r#"r = { set = { "x-a" = "1" }, remove = ["X-A"] }"#,
                "more than once",
            ),
            (
                r#"r = { add = { "Transfer-Encoding" = "chunked" } }"#,
                "managed by the proxy",
            ),
            (r#"r = { remove = ["connection"] }"#, "managed by the proxy"),
            (r#"r = { replace = {} }"#, "unknown field"),
            (r#"r = { set = ["x"] }"#, "table of header names"),
        ] {
            let e = rules(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
