//! Method conditions: `methods = ["GET", "HEAD"]`.

use http::Method;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The request methods a route accepts (case-sensitive, as HTTP methods are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Methods(Vec<Method>);

/// A method list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMethods(String);

impl Methods {
    /// A non-empty list of methods.
    pub fn new(methods: Vec<Method>) -> Result<Self, InvalidMethods> {
        if methods.is_empty() {
            return Err(InvalidMethods(
                "an empty list matches no request; leave `methods` out to match every method"
                    .to_owned(),
            ));
        }
        Ok(Self(methods))
    }

    /// True if `method` is in the list.
    #[inline]
    pub fn matches(&self, method: &Method) -> bool {
        self.0.contains(method)
    }
}

/// Parses one configured method, refusing the lowercase spelling of a standard one (a
/// `"get"` route would never see a real GET).
fn parse(text: &str) -> Result<Method, InvalidMethods> {
    let method = Method::from_bytes(text.as_bytes())
        .map_err(|_| InvalidMethods(format!("invalid method `{text}`")))?;
    let upper = text.to_ascii_uppercase();
    if upper != text && Method::from_bytes(upper.as_bytes()).is_ok_and(|m| is_standard(&m)) {
        return Err(InvalidMethods(format!(
            "methods are case-sensitive: write `{upper}`, not `{text}`"
        )));
    }
    Ok(method)
}

fn is_standard(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .contains(m)
}

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        let methods = texts
            .iter()
            .map(|t| parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(de::Error::custom)?;
        Self::new(methods).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        methods: Methods,
    }

    fn load(text: &str) -> Result<Methods, String> {
        toml::from_str::<T>(text)
            .map(|t| t.methods)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn listed_methods_match_exactly() {
        let m = load(r#"methods = ["GET", "HEAD", "PURGE"]"#).unwrap();
        assert!(m.matches(&Method::GET) && m.matches(&Method::HEAD));
        assert!(m.matches(&Method::from_bytes(b"PURGE").unwrap()));
        assert!(!m.matches(&Method::POST));
    }

    #[test]
    fn empty_lowercase_and_malformed_lists_are_refused() {
        assert!(load("methods = []").unwrap_err().contains("empty list"));
        assert!(load(r#"methods = ["get"]"#)
            .unwrap_err()
            .contains("write `GET`"));
        assert!(load(r#"methods = ["G T"]"#)
            .unwrap_err()
            .contains("invalid method"));
        assert!(load(r#"methods = "GET""#).is_err());
    }
}
