//! The status page: `/status` rendered as one self-contained HTML document (inline CSS, no
//! scripts or external assets), colour-coded by state, refreshing itself every 5 seconds
//! and laid out as cards that stack on a phone.

use std::fmt::Write;

use super::status::{BackendStatus, Status, UpstreamStatus};

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;background:#f4f5f7;color:#1d2330}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:0}\
.meta{color:#5b6475;font-size:13px;margin-bottom:12px}\
section{background:#fff;border-radius:10px;padding:12px;margin-bottom:14px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
.head{display:flex;flex-wrap:wrap;justify-content:space-between;gap:6px;align-items:baseline;margin-bottom:8px}\
.sum{font-size:13px;color:#5b6475}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:8px}\
.b{border-left:6px solid #9aa3b2;border-radius:6px;background:#fafbfc;padding:8px 10px}\
.b .n{font-weight:600;word-break:break-all}\
.st{display:inline-block;font-size:12px;font-weight:700;text-transform:uppercase;padding:1px 8px;border-radius:10px;color:#fff;background:#9aa3b2;margin-left:6px}\
.kv{font-size:13px;color:#3a4252;margin-top:4px}.kv span{margin-right:10px;white-space:nowrap}\
.why{font-size:12px;color:#a5281b;margin-top:4px;word-break:break-word}\
.up{border-color:#1f9d55}.up .st{background:#1f9d55}\
.down{border-color:#d93025}.down .st{background:#d93025}\
.ejected{border-color:#8e44ad}.ejected .st{background:#8e44ad}\
.draining{border-color:#e67e22}.draining .st{background:#e67e22}\
.disabled{border-color:#5b6475}.disabled .st{background:#5b6475}\
.err{color:#d93025;font-weight:600}";

/// Escapes text for HTML.
fn esc(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The page for `status`.
pub(crate) fn render(status: &Status) -> String {
    let mut o = String::with_capacity(8 * 1024);
    o.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    o.push_str("<meta http-equiv=\"refresh\" content=\"5\"><title>lb-proxy status</title><style>");
    o.push_str(STYLE);
    o.push_str("</style></head><body><h1>lb-proxy status</h1><div class=\"meta\">");
    let _ = write!(
        o,
        "version {} · {} open connections · ",
        status.version, status.open_connections
    );
    esc(&status.time, &mut o);
    o.push_str(" · refreshes every 5 s</div>");
    for u in &status.upstreams {
        upstream(u, &mut o);
    }
    o.push_str("</body></html>\n");
    o
}

fn upstream(u: &UpstreamStatus, o: &mut String) {
    o.push_str("<section><div class=\"head\"><h2>");
    esc(&u.name, o);
    let _ = write!(
        o,
        "</h2><div class=\"sum\">{}/{} usable · {} requests · <span class=\"{}\">{:.1}% 5xx</span> · {} retries · {} queued</div></div><div class=\"grid\">",
        u.usable,
        u.backends.len(),
        u.requests,
        if u.errors > 0 { "err" } else { "" },
        u.error_rate * 100.0,
        u.retries,
        u.queued
    );
    for b in &u.backends {
        backend(b, o);
    }
    o.push_str("</div></section>");
}

fn backend(b: &BackendStatus, o: &mut String) {
    let _ = write!(
        o,
        "<div class=\"b {}\" data-state=\"{}\"><span class=\"n\">",
        b.state, b.state
    );
    esc(&b.name, o);
    let _ = write!(o, "</span><span class=\"st\">{}</span>", b.state);
    if b.drained == Some(true) {
        o.push_str("<span class=\"st\">drained</span>");
    }
    let _ = write!(
        o,
        "<div class=\"kv\"><span>since {}</span><span>health {}</span></div>",
        human(b.since_seconds),
        b.health
    );
    let _ = write!(
        o,
        "<div class=\"kv\"><span>checks +{} / −{}</span>",
        b.consecutive_passes, b.consecutive_failures
    );
    if let Some(ms) = b.last_check_ms {
        let _ = write!(o, "<span>last check {ms:.1} ms</span>");
    }
    o.push_str("</div>");
    let _ = write!(
        o,
        "<div class=\"kv\"><span>in flight {}</span><span>requests {}</span><span class=\"{}\">errors {:.1}%</span>",
        b.in_flight,
        b.requests,
        if b.errors > 0 { "err" } else { "" },
        b.error_rate * 100.0
    );
    if b.ejections > 0 {
        let _ = write!(o, "<span>ejections {}</span>", b.ejections);
    }
    o.push_str("</div>");
    if let Some(why) = &b.last_failure {
        o.push_str("<div class=\"why\">last failure: ");
        esc(why, o);
        o.push_str("</div>");
    }
    o.push_str("</div>");
}

/// `42s ago`, `3m 5s ago`, `2h 1m ago`, `4d 3h ago`.
fn human(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m {}s ago", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m ago", s / 3600, s / 60 % 60),
        s => format!("{}d {}h ago", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let mut s = String::new();
        esc("<a href='x'>&\"", &mut s);
        assert_eq!(s, "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(42), "42s ago");
        assert_eq!(human(185), "3m 5s ago");
        assert_eq!(human(7260), "2h 1m ago");
    }
}
