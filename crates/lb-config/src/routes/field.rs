//! Header, cookie and query-parameter conditions, each in one of three forms:
//! `{ name = "x-debug" }` (present), `{ name = "x-canary", value = "1" }` (equals) and
//! `{ name = "user-agent", regex = "Mobile" }` (matches).
//!
//! A name that occurs several times (a repeated header, cookie or parameter) matches if any
//! occurrence does. Header names are case-insensitive; cookie and parameter names are
//! compared exactly (RFC 6265; parameter names after percent-decoding). Values are compared
//! exactly, as bytes: header and cookie values raw, parameter values percent-decoded.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::parse;
use super::path::Pattern;

/// What a condition requires of a value.
#[derive(Clone, Debug)]
pub enum ValueTest {
    /// Only that the name occurs (any value, even empty).
    Present,
    /// The value equals these bytes.
    Equals(Box<[u8]>),
    /// The expression matches the value.
    Regex(Pattern),
}

/// `headers = [{ name = "...", ... }]`: a condition on a request header.
#[derive(Clone, Debug)]
pub struct HeaderMatch {
    name: HeaderName,
    test: ValueTest,
}

/// `cookies = [{ name = "...", ... }]`: a condition on a cookie of the `Cookie` header(s).
#[derive(Clone, Debug)]
pub struct CookieMatch {
    name: Box<str>,
    test: ValueTest,
}

/// `query = [{ name = "...", ... }]`: a condition on a query parameter.
#[derive(Clone, Debug)]
pub struct QueryMatch {
    name: Box<str>,
    test: ValueTest,
}

/// A condition that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCondition(String);

/// The three condition forms as written; `N` is the name's type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<N> {
    name: N,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    regex: Option<Pattern>,
}

impl<N> Raw<N> {
    fn test(self) -> Result<(N, ValueTest), InvalidCondition> {
        let test = match (self.value, self.regex) {
            (None, None) => ValueTest::Present,
            (Some(v), None) => ValueTest::Equals(v.into_bytes().into()),
            (None, Some(r)) => ValueTest::Regex(r),
            (Some(_), Some(_)) => {
                return Err(InvalidCondition(
                    "set `value` or `regex`, not both".to_owned(),
                ))
            }
        };
        Ok((self.name, test))
    }
}

impl ValueTest {
    /// True if `value` passes.
    #[inline]
    pub fn test(&self, value: &[u8]) -> bool {
        match self {
            Self::Present => true,
            Self::Equals(expected) => value == &**expected,
            Self::Regex(r) => r.is_match(value),
        }
    }

    /// True if `raw` passes once percent-decoded; allocates only for a regex on an
    /// escaped value longer than 256 bytes.
    #[inline]
    pub fn test_encoded(&self, raw: &[u8]) -> bool {
        match self {
            Self::Present => true,
            Self::Equals(expected) => parse::decodes_to(raw, expected),
            Self::Regex(r) => parse::with_decoded(raw, |v| r.is_match(v)),
        }
    }
}

impl HeaderMatch {
    /// A condition on header `name`.
    pub fn new(name: HeaderName, test: ValueTest) -> Self {
        Self { name, test }
    }

    /// True if some `name` header of `headers` passes.
    #[inline]
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(&self.name)
            .iter()
            .any(|v| self.test.test(v.as_bytes()))
    }
}

impl CookieMatch {
    /// A condition on cookie `name`; the name is a non-empty token (no `=`, `;`, spaces,
    /// quotes or control characters).
    pub fn new(name: &str, test: ValueTest) -> Result<Self, InvalidCondition> {
        let bad = name.is_empty()
            || name
                .bytes()
                .any(|b| !b.is_ascii_graphic() || matches!(b, b'=' | b';' | b',' | b'"'));
        if bad {
            return Err(InvalidCondition(format!(
                "invalid cookie name `{name}`: expected a token without `=`, `;`, `,`, quotes or spaces"
            )));
        }
        Ok(Self {
            name: name.into(),
            test,
        })
    }

    /// True if some cookie called `name` in the `Cookie` header(s) of `headers` passes.
    #[inline]
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        parse::cookies(headers).any(|(n, v)| n == self.name.as_bytes() && self.test.test(v))
    }
}

impl QueryMatch {
    /// A condition on query parameter `name` (decoded, non-empty).
    pub fn new(name: &str, test: ValueTest) -> Result<Self, InvalidCondition> {
        if name.is_empty() {
            return Err(InvalidCondition(
                "a query parameter name cannot be empty".to_owned(),
            ));
        }
        Ok(Self {
            name: name.into(),
            test,
        })
    }

    /// True if some parameter called `name` in `query` (the raw query string) passes.
    #[inline]
    pub fn matches(&self, query: Option<&str>) -> bool {
        query.is_some_and(|q| {
            parse::query_pairs(q).any(|(n, v)| {
                parse::decodes_to(n, self.name.as_bytes()) && self.test.test_encoded(v)
            })
        })
    }
}

/// A header name as text in the configuration.
struct Name(HeaderName);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HeaderName::from_bytes(text.as_bytes())
            .map(Name)
            .map_err(|_| de::Error::custom(format!("invalid header name `{text}`")))
    }
}

impl<'de> Deserialize<'de> for HeaderMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, test) = Raw::<Name>::deserialize(deserializer)?
            .test()
            .map_err(de::Error::custom)?;
        if let ValueTest::Equals(v) = &test {
            if HeaderValue::from_bytes(v).is_err() {
                return Err(de::Error::custom(format!(
                    "`value` {:?} can never be a header value (control characters)",
                    String::from_utf8_lossy(v)
                )));
            }
        }
        Ok(Self::new(name.0, test))
    }
}

impl<'de> Deserialize<'de> for CookieMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, test) = Raw::<String>::deserialize(deserializer)?
            .test()
            .map_err(de::Error::custom)?;
        Self::new(&name, test).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for QueryMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, test) = Raw::<String>::deserialize(deserializer)?
            .test()
            .map_err(de::Error::custom)?;
        Self::new(&name, test).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    fn eq(v: &str) -> ValueTest {
        ValueTest::Equals(v.as_bytes().into())
    }

    fn re(r: &str) -> ValueTest {
        ValueTest::Regex(Pattern::new(r).unwrap())
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in list {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn header_conditions_in_all_three_forms() {
        let h = headers(&[
            ("User-Agent", "Mozilla/5.0 (iPhone) Mobile"),
            ("x-canary", "0"),
            ("x-canary", "1"),
            ("x-empty", ""),
        ]);
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).unwrap();
        assert!(HeaderMatch::new(name("USER-AGENT"), re("Mobile")).matches(&h));
        assert!(!HeaderMatch::new(name("user-agent"), re("^Mobile")).matches(&h));
        assert!(
            HeaderMatch::new(name("x-canary"), eq("1")).matches(&h),
            "any of repeated"
        );
        assert!(!HeaderMatch::new(name("x-canary"), eq("2")).matches(&h));
        assert!(HeaderMatch::new(name("x-empty"), ValueTest::Present).matches(&h));
        assert!(HeaderMatch::new(name("x-empty"), eq("")).matches(&h));
        assert!(!HeaderMatch::new(name("x-debug"), ValueTest::Present).matches(&h));
        assert!(!HeaderMatch::new(name("x-debug"), eq("")).matches(&h));
    }

    #[test]
    fn cookie_conditions_read_every_cookie_header() {
        let h = headers(&[
            (COOKIE.as_str(), "session=abc; canary=\"yes\""),
            (COOKIE.as_str(), "theme=; canary=no"),
        ]);
        let c = |n: &str, t| CookieMatch::new(n, t).unwrap();
        assert!(
            c("canary", eq("yes")).matches(&h),
            "quoted value, first header"
        );
        assert!(c("canary", eq("no")).matches(&h), "second header");
        assert!(c("theme", eq("")).matches(&h), "empty value");
        assert!(c("theme", ValueTest::Present).matches(&h));
        assert!(c("session", re("^a")).matches(&h));
        assert!(
            !c("Session", ValueTest::Present).matches(&h),
            "names are case-sensitive"
        );
        assert!(!c("sess", ValueTest::Present).matches(&h));
        assert!(!c("canary", eq("\"yes\"")).matches(&h));
        assert!(!c("x", ValueTest::Present).matches(&HeaderMap::new()));
        for bad in ["", "a=b", "a;b", "a b", "\"a\""] {
            assert!(
                CookieMatch::new(bad, ValueTest::Present).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn query_conditions_decode_names_and_values() {
        let q = Some("variant=B&user=al%69ce&name=J%C3%A9r%C3%B4me+X&flag&empty=&a%5Bb%5D=1");
        let m = |n: &str, t| QueryMatch::new(n, t).unwrap().matches(q);
        assert!(m("variant", eq("B")));
        assert!(!m("variant", eq("b")));
        assert!(m("user", eq("alice")), "escaped value");
        assert!(m("name", eq("Jérôme X")), "UTF-8 escapes and +");
        assert!(m("name", re("^Jér.me X$")), "regex on the decoded value");
        assert!(m("flag", ValueTest::Present) && m("flag", eq("")));
        assert!(m("empty", eq("")));
        assert!(m("a[b]", eq("1")), "escaped name");
        assert!(!m("missing", ValueTest::Present));
        assert!(!QueryMatch::new("flag", ValueTest::Present)
            .unwrap()
            .matches(None));
        assert!(QueryMatch::new("", ValueTest::Present).is_err());
    }

    #[test]
    fn forms_deserialize_and_conflicts_are_refused() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default)]
            h: Vec<HeaderMatch>,
            #[serde(default)]
            c: Vec<CookieMatch>,
        }
        let ok: T = toml::from_str(
            r#"h = [{ name = "x-a" }, { name = "x-b", value = "1" }, { name = "x-c", regex = "^a" }]
               c = [{ name = "s", value = "1" }]"#,
        )
        .unwrap();
        assert_eq!(ok.h.len(), 3);
        assert_eq!(ok.c.len(), 1);
        for (bad, says) in [
            (r#"h = [{ name = "x a" }]"#, "invalid header name"),
            (
                r#"h = [{ name = "x", value = "1", regex = "1" }]"#,
                "not both",
            ),
            (
                r#"h = [{ name = "x", regex = "(" }]"#,
                "invalid regular expression",
            ),
            (
                r#"h = [{ name = "x", value = "a\nb" }]"#,
                "never be a header value",
            ),
            (r#"h = [{ name = "x", values = "1" }]"#, "unknown field"),
            (r#"c = [{ name = "a=b" }]"#, "invalid cookie name"),
        ] {
            let e = toml::from_str::<T>(bad).err().unwrap().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
