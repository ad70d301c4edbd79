//! Access log lines: `combined` (nginx's combined format plus `key=value` fields) and
//! `json` (one object per line).
//!
//! ```text
//! 127.0.0.1 - - [21/Nov/2026:23:22:54 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl/8.5.0" route=0 upstream=web backend=127.0.0.1:9001 rt=0.002 urt=0.001 retries=0
//! ```

use std::fmt::Write;
use std::time::Duration;

use http::HeaderValue;

use super::{Names, Record};
use crate::config::AccessLogFormat;
use crate::timestamp as time;

/// Appends the line for `r` (with its newline) to `out`.
pub(super) fn line(r: &Record, format: AccessLogFormat, names: &Names, out: &mut String) {
    match format {
        AccessLogFormat::Json => json(r, names, out),
        _ => combined(r, names, out),
    }
    out.push('\n');
}

fn route<'a>(r: &Record, names: &'a Names) -> &'a str {
    r.route
        .and_then(|i| names.routes.get(i))
        .map_or("-", String::as_str)
}

fn upstream<'a>(r: &Record, names: &'a Names) -> &'a str {
    r.upstream
        .and_then(|i| names.upstreams.get(i))
        .map_or("-", String::as_str)
}

/// Header bytes as nginx logs them: printable ASCII kept, `"`, `\` and the rest as `\xHH`.
fn escaped(v: Option<&HeaderValue>, out: &mut String) {
    let Some(v) = v else {
        out.push('-');
        return;
    };
    for &b in v.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn combined(r: &Record, names: &Names, out: &mut String) {
    let _ = write!(out, "{} - - [", r.client);
    time::clf(r.time, out);
    let _ = write!(out, "] \"{} ", r.method);
    escaped(HeaderValue::from_str(&r.uri.to_string()).ok().as_ref(), out);
    let _ = write!(out, " {:?}\" {} ", r.version, r.status);
    match r.bytes {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push('-'),
    }
    out.push_str(" \"");
    escaped(r.referer.as_ref(), out);
    out.push_str("\" \"");
    escaped(r.user_agent.as_ref(), out);
    let _ = write!(
        out,
        "\" route={} upstream={} backend=",
        route(r, names),
        upstream(r, names)
    );
    match &r.backend {
        Some(b) => out.push_str(b.name()),
        None => out.push('-'),
    }
    let _ = write!(out, " rt={:.3} urt=", secs(r.duration));
    match r.upstream_time {
        Some(t) => {
            let _ = write!(out, "{:.3}", secs(t));
        }
        None => out.push('-'),
    }
    let _ = write!(out, " retries={}", r.retries);
}

fn json(r: &Record, names: &Names, out: &mut String) {
    let mut time = String::with_capacity(24);
    time::rfc3339(r.time, &mut time);
    let text = |v: &Option<HeaderValue>| {
        v.as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let value = serde_json::json!({
        "time": time,
        "client": r.client.to_string(),
        "method": r.method.as_str(),
        "uri": r.uri.to_string(),
        "protocol": format!("{:?}", r.version),
        "status": r.status,
        "bytes": r.bytes,
        "route": r.route.and_then(|i| names.routes.get(i)),
        "upstream": r.upstream.and_then(|i| names.upstreams.get(i)),
        "backend": r.backend.as_ref().map(|b| b.name()),
        "duration_ms": secs(r.duration) * 1000.0,
        "upstream_ms": r.upstream_time.map(|t| secs(t) * 1000.0),
        "retries": r.retries,
        "referer": text(&r.referer),
        "user_agent": text(&r.user_agent),
    });
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::UNIX_EPOCH;

    fn record() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_secs(1_795_303_374),
            client: "10.0.0.7".parse().unwrap(),
            method: http::Method::GET,
            uri: "/a?b=c".parse().unwrap(),
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(5),
            route: Some(0),
            upstream: Some(0),
            backend: Some(lb_core::Backend::parse("127.0.0.1:9001").unwrap()),
            duration: Duration::from_millis(12),
            upstream_time: Some(Duration::from_millis(10)),
            retries: 1,
            referer: None,
            user_agent: Some(HeaderValue::from_static("curl \"x\"")),
        }
    }

    fn names() -> Names {
        Names {
            routes: vec!["0".into()],
            upstreams: vec!["web".into()],
        }
    }

    #[test]
    fn combined_line() {
        let mut s = String::new();
        line(&record(), AccessLogFormat::Combined, &names(), &mut s);
        assert_eq!(
            s,
            "10.0.0.7 - - [21/Nov/2026:23:22:54 +0000] \"GET /a?b=c HTTP/1.1\" 200 5 \"-\" \
             \"curl \\x22x\\x22\" route=0 upstream=web backend=127.0.0.1:9001 rt=0.012 \
             urt=0.010 retries=1\n"
        );
    }

    #[test]
    fn json_line() {
        let mut s = String::new();
        line(&record(), AccessLogFormat::Json, &names(), &mut s);
        let v: serde_json::Value = serde_json::from_str(s.trim_end()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream"], "web");
        assert_eq!(v["backend"], "127.0.0.1:9001");
        assert_eq!(v["retries"], 1);
        assert_eq!(v["user_agent"], "curl \"x\"");
        assert_eq!(v["time"], "2026-11-21T23:22:54.000Z");
    }
}
