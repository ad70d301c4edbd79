//! How one metric family of `/metrics` is written: its descriptor (`# HELP`, `# TYPE`,
//! `# UNIT`) and its rows, through `prometheus-client`'s OpenMetrics encoder.
//!
//! The encoder writes label values and help texts as they are given. Label values come
//! from the configuration and from discovery (upstream and backend names), so
//! [`labels`] escapes them here, once, as both text formats require (`\\`, `\"`, `\n`);
//! help texts are constants, checked by a test to need no escaping.

use std::collections::HashMap;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::stats::histogram::HistogramSnapshot;

/// A label set: `(name, escaped value)` pairs; build it with [`labels`].
pub(crate) type Labels = Vec<(&'static str, String)>;

/// A label set from `(name, value)` pairs, the values escaped for the exposition.
pub(crate) fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, escape(v))).collect()
}

/// Escapes a label value: backslash, double quote and line feed, the three characters
/// OpenMetrics and the classic text format both escape.
fn escape(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A counter family; `name` without `_total`, which the encoder appends to each sample.
pub(crate) fn counters(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    let none = None::<&Exemplar<NoLabelSet, u64>>;
    for (labels, v) in rows {
        // No `{}` for a metric without labels: not every parser takes it.
        if labels.is_empty() {
            m.encode_counter::<NoLabelSet, _, u64>(v, none)?;
        } else {
            m.encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(v, none)?;
        }
    }
    Ok(())
}

/// A gauge family; with a `unit`, `name` is without it (`_seconds` is appended and a
/// `# UNIT` line written).
pub(crate) fn gauges<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    unit: Option<Unit>,
    help: &str,
    rows: &[(Labels, V)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            m.encode_gauge(v)?;
        } else {
            m.encode_family(labels)?.encode_gauge(v)?;
        }
    }
    Ok(())
}

/// A histogram family in seconds; `name` without `_seconds`.
pub(crate) fn histograms(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, HistogramSnapshot)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in rows {
        m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            h.sum,
            h.count,
            &h.buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels([("upstream", "web"), ("backend", "a\\b \"c\"\nd")]),
            vec![
                ("upstream", "web".to_owned()),
                ("backend", "a\\\\b \\\"c\\\"\\nd".to_owned())
            ]
        );
    }
}
