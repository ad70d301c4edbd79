//! Which text format `GET /metrics` answers in, from the scraper's `Accept` header.
//!
//! Two formats are served: OpenMetrics 1.0 (`application/openmetrics-text`) and the
//! classic Prometheus text format (`text/plain; version=0.0.4`). Each gets the quality of
//! the most specific media range that matches it (RFC 9110 §12.5.1: a type with a
//! matching `version` over the bare type, over `type/*`, over `*/*`), and the higher
//! quality wins. OpenMetrics wins ties and is the answer when neither is acceptable (no
//! `Accept`, `*/*`, or only other types): it is what `/metrics` always served, and
//! strict clients parse it.
//!
//! Prometheus sends for instance `application/openmetrics-text;version=1.0.0;q=0.5,
//! application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,
//! */*;q=0.2` and gets OpenMetrics; with `scrape_protocols: [PrometheusText0.0.4]` it
//! prefers `text/plain` and gets the classic format.

/// A text format of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0.0 text, ending with `# EOF`.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    Classic,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format to answer a request whose `Accept` header values are `accept`.
    pub(crate) fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Self {
        let ranges: Vec<Range<'_>> = accept
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter_map(Range::parse)
            .collect();
        let openmetrics = quality(
            &ranges,
            ("application", "openmetrics-text"),
            &["1.0.0", "0.0.1"],
        );
        // Prometheus 3 asks for text/plain version 1.0.0 too: for names without UTF-8
        // (all of these), the 0.0.4 page is that format.
        let classic = quality(&ranges, ("text", "plain"), &["0.0.4", "1.0.0"]);
        if classic > openmetrics {
            Self::Classic
        } else {
            Self::OpenMetrics
        }
    }
}

/// One media range of an `Accept` header: `type/subtype`, its `version` parameter if
/// any, and its quality.
#[derive(Debug)]
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    version: Option<&'a str>,
    q: f32,
}

impl<'a> Range<'a> {
    /// Parses `type/subtype;param=value;q=0.5`; `None` for a malformed range, which is
    /// ignored (as is a malformed quality).
    fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.split(';').map(str::trim);
        let (kind, subtype) = parts.next()?.split_once('/')?;
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut range = Range {
            kind,
            subtype,
            version: None,
            q: 1.0,
        };
        for param in parts {
            let (key, value) = param.split_once('=')?;
            let value = value.trim().trim_matches('"');
            match key.trim() {
                k if k.eq_ignore_ascii_case("q") => {
                    range.q = value
                        .parse()
                        .ok()
                        .filter(|q: &f32| (0.0..=1.0).contains(q))?;
                }
                k if k.eq_ignore_ascii_case("version") => range.version = Some(value),
                _ => {}
            }
        }
        Some(range)
    }

    /// How specifically this range names `media` in one of `versions` (3: with a matching
    /// version, 2: the type without a version, 1: `type/*`, 0: `*/*`), or `None` when it
    /// does not apply.
    fn specificity(&self, (kind, subtype): (&str, &str), versions: &[&str]) -> Option<u8> {
        if self.kind == "*" {
            return (self.subtype == "*").then_some(0);
        }
        if !self.kind.eq_ignore_ascii_case(kind) {
            return None;
        }
        if self.subtype == "*" {
            return Some(1);
        }
        if !self.subtype.eq_ignore_ascii_case(subtype) {
            return None;
        }
        match self.version {
            None => Some(2),
            Some(v) => versions.contains(&v).then_some(3),
        }
    }
}

/// The quality the client gives `media`: that of the most specific range applying to it
/// (the highest among equally specific ones), 0 when none does.
fn quality(ranges: &[Range<'_>], media: (&str, &str), versions: &[&str]) -> f32 {
    ranges
        .iter()
        .filter_map(|r| Some((r.specificity(media, versions)?, r.q)))
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::Format::{Classic, OpenMetrics};
    use super::*;

    fn pick(accept: &str) -> Format {
        Format::negotiate([accept])
    }

    #[test]
    fn prometheus_gets_what_it_prefers() {
        // Prometheus 2's default scrape protocols, and Prometheus 3's.
        assert_eq!(
            pick(
                "application/openmetrics-text;version=1.0.0;q=0.5,\
                 application/openmetrics-text;version=0.0.1;q=0.4,\
                 text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            ),
            OpenMetrics
        );
        assert_eq!(
            pick(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                 encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;\
                 escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,\
                 text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
                 text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
            ),
            OpenMetrics
        );
        // scrape_protocols: [PrometheusText0.0.4], or a scraper that only speaks it.
        assert_eq!(pick("text/plain;version=0.0.4;q=0.5,*/*;q=0.4"), Classic);
        assert_eq!(pick("text/plain; version=0.0.4"), Classic);
        assert_eq!(pick("text/plain"), Classic);
        assert_eq!(
            pick("application/openmetrics-text;q=0.3, text/plain;q=0.7"),
            Classic
        );
    }

    #[test]
    fn openmetrics_is_the_default() {
        assert_eq!(Format::negotiate([]), OpenMetrics);
        assert_eq!(pick("*/*"), OpenMetrics);
        assert_eq!(
            pick("text/plain, application/openmetrics-text"),
            OpenMetrics
        );
        assert_eq!(pick("application/json"), OpenMetrics);
        assert_eq!(pick("garbage;;"), OpenMetrics);
        // A browser: everything at 0.8, a tie.
        assert_eq!(
            pick("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            OpenMetrics
        );
    }

    #[test]
    fn the_most_specific_range_decides() {
        // OpenMetrics refused outright, anything else welcome.
        assert_eq!(pick("application/openmetrics-text;q=0, */*"), Classic);
        // text/* counts for text/plain.
        assert_eq!(pick("text/*;q=0.9, */*;q=0.1"), Classic);
        // A version we do not write does not apply; */* does, to both.
        assert_eq!(pick("text/plain;version=9.9.9, */*;q=0.5"), OpenMetrics);
        // The versioned range wins over the bare type.
        assert_eq!(
            pick("text/plain;version=0.0.4;q=0.9, text/plain;q=0.1, application/openmetrics-text;q=0.5"),
            Classic
        );
        // Several header lines count together; case does not matter.
        assert_eq!(
            Format::negotiate(["application/json", "TEXT/Plain;Q=0.8"]),
            Classic
        );
        // A malformed quality drops its range.
        assert_eq!(pick("text/plain;q=high"), OpenMetrics);
    }
}
