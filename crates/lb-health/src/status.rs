//! `StatusSet`: a set of HTTP status codes written like `"2xx,3xx"` or `"200,204"`.
//!
//! nginx's check module takes the statuses that count as alive as classes
//! (`check_http_expect_alive http_2xx http_3xx;`, its default), HAProxy as one code or a
//! regex (`http-check expect status 200`), Envoy as ranges (`expected_statuses`). A
//! `StatusSet` accepts all three shapes in one small syntax: comma-separated classes
//! (`2xx`), codes (`204`) and inclusive ranges (`200-299`). It is a 500-bit set (codes
//! 100 to 599), so a lookup is one shift and one mask, and the type is `Copy`.

use std::fmt;
use std::str::FromStr;

const MIN: u16 = 100;
const MAX: u16 = 599;
const WORDS: usize = 8; // 8 * 64 = 512 bits >= 500 codes

/// A set of HTTP status codes (100 to 599).
///
/// The default is `2xx,3xx`, what nginx's `check_http_expect_alive` accepts by default.
///
/// ```
/// use lb_health::StatusSet;
///
/// let set: StatusSet = "2xx,404".parse()?;
/// assert!(set.contains(204) && set.contains(404));
/// assert!(!set.contains(301) && !set.contains(500));
/// assert_eq!(set.to_string(), "2xx,404");
/// assert_eq!(StatusSet::default().to_string(), "2xx,3xx");
/// assert_eq!("200-204, 206".parse::<StatusSet>()?.to_string(), "200-204,206");
/// assert!("2xx,999".parse::<StatusSet>().is_err());
/// # Ok::<(), lb_health::StatusSetError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusSet {
    bits: [u64; WORDS],
}

/// Why a status set could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid status set `{text}`: {reason}")]
pub struct StatusSetError {
    /// The part that could not be parsed.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl StatusSet {
    /// The empty set.
    pub const fn empty() -> Self {
        Self { bits: [0; WORDS] }
    }

    /// The gateway errors 502, 503 and 504 (what Envoy counts as gateway failures).
    pub fn gateway_errors() -> Self {
        Self::empty().with_range(502, 504)
    }

    /// This set plus `code` (ignored outside 100 to 599).
    #[must_use]
    pub fn with(self, code: u16) -> Self {
        self.with_range(code, code)
    }

    /// This set plus every code from `from` to `to` inclusive (clamped to 100 to 599).
    #[must_use]
    pub fn with_range(mut self, from: u16, to: u16) -> Self {
        for code in from.max(MIN)..=to.min(MAX) {
            let i = usize::from(code - MIN);
            self.bits[i / 64] |= 1 << (i % 64);
        }
        self
    }

    /// True when `code` is in the set.
    #[inline]
    pub fn contains(&self, code: u16) -> bool {
        if !(MIN..=MAX).contains(&code) {
            return false;
        }
        let i = usize::from(code - MIN);
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// True when no code is in the set.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The codes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (MIN..=MAX).filter(|c| self.contains(*c))
    }
}

impl Default for StatusSet {
    /// `2xx,3xx`.
    fn default() -> Self {
        Self::empty().with_range(200, 399)
    }
}

fn parse_code(text: &str) -> Result<u16, &'static str> {
    let code: u16 = text.parse().map_err(|_| "expected a status code")?;
    if (MIN..=MAX).contains(&code) {
        Ok(code)
    } else {
        Err("status codes go from 100 to 599")
    }
}

impl FromStr for StatusSet {
    type Err = StatusSetError;

    /// Parses comma-separated items: a class (`2xx`, any case), a code (`204`) or an
    /// inclusive range (`200-299`). Spaces around items are ignored; at least one item is
    /// required.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut set = Self::empty();
        for item in text.split(',').map(str::trim) {
            let err = |reason| StatusSetError {
                text: item.to_owned(),
                reason,
            };
            if item.is_empty() {
                return Err(err("empty item"));
            }
            let lower = item.to_ascii_lowercase();
            if let Some(class) = lower.strip_suffix("xx") {
                match class.parse::<u16>() {
                    Ok(c @ 1..=5) if class.len() == 1 => {
                        set = set.with_range(c * 100, c * 100 + 99);
                    }
                    _ => return Err(err("a class is 1xx to 5xx")),
                }
            } else if let Some((from, to)) = item.split_once('-') {
                let from = parse_code(from.trim()).map_err(err)?;
                let to = parse_code(to.trim()).map_err(err)?;
                if from > to {
                    return Err(err("a range must go upwards"));
                }
                set = set.with_range(from, to);
            } else {
                set = set.with(parse_code(item).map_err(err)?);
            }
        }
        Ok(set)
    }
}

impl fmt::Display for StatusSet {
    /// The shortest canonical form: whole classes as `2xx`, runs as `200-204`, single
    /// codes as `404`, ascending; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if std::mem::take(&mut first) {
                Ok(())
            } else {
                f.write_str(",")
            }
        };
        let mut code = MIN;
        while code <= MAX {
            if !self.contains(code) {
                code += 1;
                continue;
            }
            if starts_class(code) && (code..code + 100).all(|c| self.contains(c)) {
                sep(f)?;
                write!(f, "{}xx", code / 100)?;
                code += 100;
                continue;
            }
            // A run, stopping at a class boundary so that a following whole class prints
            // as `Nxx`.
            let mut end = code;
            while end < MAX && self.contains(end + 1) && !starts_class(end + 1) {
                end += 1;
            }
            sep(f)?;
            if end == code {
                write!(f, "{code}")?;
            } else {
                write!(f, "{code}-{end}")?;
            }
            code = end + 1;
        }
        Ok(())
    }
}

/// True for 100, 200, ... 500: the first code of a class.
fn starts_class(code: u16) -> bool {
    code / 100 * 100 == code
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_classes_codes_and_ranges() {
        let set: StatusSet = "2XX, 304 ,500-502".parse().unwrap();
        for ok in [200, 250, 299, 304, 500, 501, 502] {
            assert!(set.contains(ok), "{ok}");
        }
        for no in [199, 300, 303, 305, 499, 503, 99, 600, 0, u16::MAX] {
            assert!(!set.contains(no), "{no}");
        }
        assert_eq!(set.to_string(), "2xx,304,500-502");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "2xx,3xx",
            "200,204",
            "2xx,404",
            "1xx,2xx,3xx,4xx,5xx",
            "599",
            "100",
        ] {
            let set: StatusSet = text.parse().unwrap();
            assert_eq!(set.to_string(), text);
            assert_eq!(set.to_string().parse::<StatusSet>().unwrap(), set);
        }
        assert_eq!(StatusSet::empty().to_string(), "none");
        assert_eq!(StatusSet::gateway_errors().to_string(), "502-504");
        let across = StatusSet::empty().with_range(290, 410);
        assert_eq!(across.to_string(), "290-299,3xx,400-410");
    }

    #[test]
    fn rejects_bad_items_naming_them() {
        for (bad, part) in [
            ("", ""),
            ("2xx,", ""),
            ("6xx", "6xx"),
            ("20x", "20x"),
            ("22xx", "22xx"),
            ("abc", "abc"),
            ("99", "99"),
            ("600", "600"),
            ("300-200", "300-200"),
        ] {
            let err = bad.parse::<StatusSet>().unwrap_err();
            assert_eq!(err.text, part, "{bad}: {err}");
        }
    }
}
