//! The classic Prometheus text format (`text/plain; version=0.0.4`), converted from the
//! OpenMetrics text that `prometheus-client` writes: the crate has no encoder for the
//! classic format, and converting its output in this one place keeps one source of truth
//! for what `/metrics` contains.
//!
//! The two formats share the sample syntax (names, label escaping, `+Inf`); they differ in
//! the metadata, which is all this rewrites:
//!
//! | OpenMetrics 1.0 | classic 0.0.4 |
//! |---|---|
//! | `# TYPE x counter`, samples `x_total` (and `x_created`) | `# TYPE x_total counter` and `# HELP x_total`, samples `x_total`; `x_created` dropped |
//! | `# TYPE x info`, samples `x_info` | `# TYPE x_info gauge` |
//! | `# TYPE x stateset` / `unknown` | `gauge` / `untyped` |
//! | `x_created` of a histogram or summary | dropped |
//! | `# UNIT x u` | dropped (no such line) |
//! | `# EOF` | dropped (no end marker) |
//! | `\"` in a help text (escaped there) | `"` (only `\\` and `\n` are escapes) |
//! | exemplars (` # {...} v`) | dropped |
//! | timestamps in seconds (`1.5`) | milliseconds (`1500`) |
//!
//! Counters, gauges and histograms are what `/metrics` has; the other rows keep the
//! conversion correct for anything the encoder can write.

use std::collections::HashMap;

/// The classic text exposition of `openmetrics`, an OpenMetrics text page.
pub(crate) fn from_openmetrics(openmetrics: &str) -> String {
    // The TYPE of each family first: its HELP line comes before it and is renamed too.
    let types: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("# TYPE ")?.splitn(2, ' ');
            Some((parts.next()?, parts.next()?))
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    // The family whose metadata came last: the samples that follow belong to it.
    let mut family: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = types.get(name).copied().unwrap_or("unknown");
            match keyword {
                "HELP" => {
                    family = Some((name, kind));
                    let text = text.replace("\\\"", "\"");
                    out.push_str(&format!("# HELP {} {text}\n", classic_name(name, kind)));
                }
                "TYPE" => {
                    family = Some((name, kind));
                    let classic = classic_type(kind);
                    out.push_str(&format!("# TYPE {} {classic}\n", classic_name(name, kind)));
                }
                // UNIT and EOF have no classic equivalent; other comments stay.
                "UNIT" | "EOF" => {}
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(sample) = sample(line, family) {
            out.push_str(&sample);
            out.push('\n');
        }
    }
    out
}

/// The classic family name: counters and info metrics are named after their samples.
fn classic_name(name: &str, kind: &str) -> String {
    match kind {
        "counter" => format!("{name}_total"),
        "info" => format!("{name}_info"),
        _ => name.to_owned(),
    }
}

/// The classic type of an OpenMetrics type.
fn classic_type(kind: &str) -> &'static str {
    match kind {
        "counter" => "counter",
        "gauge" | "info" | "stateset" => "gauge",
        "histogram" => "histogram",
        "summary" => "summary",
        _ => "untyped",
    }
}

/// One sample line in the classic format, or `None` when it has no classic equivalent
/// (`_created`): the exemplar dropped, the timestamp turned into milliseconds.
fn sample(line: &str, family: Option<(&str, &str)>) -> Option<String> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if let Some((family, kind)) = family {
        let created = name.strip_prefix(family) == Some("_created");
        if created && matches!(kind, "counter" | "histogram" | "summary") {
            return None;
        }
    }
    let labels_end = if line[name_end..].starts_with('{') {
        name_end + labels_len(&line[name_end..])?
    } else {
        name_end
    };
    let (series, rest) = line.split_at(labels_end);
    // What follows the series: ` value`, then maybe ` timestamp`, then maybe ` # exemplar`.
    let rest = rest.split(" # ").next().unwrap_or("");
    let mut fields = rest.split_whitespace();
    let value = fields.next()?;
    match fields.next() {
        None => Some(format!("{series} {value}")),
        Some(seconds) => {
            let millis = (seconds.parse::<f64>().ok()? * 1000.0).round();
            Some(format!("{series} {value} {millis}"))
        }
    }
}

/// The length of the label set at the start of `text` (`{...}`, quotes and escapes
/// honoured), or `None` if it does not close.
fn labels_len(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_the_total_name_and_lose_created() {
        let om = "# HELP lb_requests Requests \\\"answered\\\".\n\
                  # TYPE lb_requests counter\n\
                  lb_requests_total{class=\"2xx\"} 5\n\
                  lb_requests_created{class=\"2xx\"} 1700000000.5\n\
                  # EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP lb_requests_total Requests \"answered\".\n\
             # TYPE lb_requests_total counter\n\
             lb_requests_total{class=\"2xx\"} 5\n"
        );
    }

    #[test]
    fn histograms_keep_their_samples_and_lose_the_unit() {
        let om = "# HELP d_seconds Duration.\n\
                  # TYPE d_seconds histogram\n\
                  # UNIT d_seconds seconds\n\
                  d_seconds_sum{r=\"0\"} 0.5\n\
                  d_seconds_count{r=\"0\"} 2\n\
                  d_seconds_bucket{le=\"0.0005\",r=\"0\"} 1\n\
                  d_seconds_bucket{le=\"+Inf\",r=\"0\"} 2 # {trace=\"x\"} 0.4 1.25\n\
                  # EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP d_seconds Duration.\n\
             # TYPE d_seconds histogram\n\
             d_seconds_sum{r=\"0\"} 0.5\n\
             d_seconds_count{r=\"0\"} 2\n\
             d_seconds_bucket{le=\"0.0005\",r=\"0\"} 1\n\
             d_seconds_bucket{le=\"+Inf\",r=\"0\"} 2\n"
        );
    }

    #[test]
    fn gauges_info_and_unknown() {
        let om = "# HELP up Up.\n# TYPE up gauge\nup 1\n\
                  # HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n\
                  # TYPE odd unknown\nodd 3 2.5\n# EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP up Up.\n# TYPE up gauge\nup 1\n\
             # HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n\
             # TYPE odd untyped\nodd 3 2500\n"
        );
    }

    #[test]
    fn label_values_are_read_with_their_quotes_and_escapes() {
        // A value holding `}`, ` # ` and an escaped quote is not an exemplar or an end.
        let om = "# TYPE g gauge\ng{a=\"x} # \\\"y\\\\\",b=\"\"} 7 # {t=\"1\"} 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# TYPE g gauge\ng{a=\"x} # \\\"y\\\\\",b=\"\"} 7\n"
        );
    }
}
