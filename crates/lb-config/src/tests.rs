//! Configuration parsing and error reporting.

use super::*;

const GOOD: &str = r#"
[server]
listen = ["127.0.0.1:8080"]

[upstreams.web]
selection = "round_robin"
backends = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }, "[::1]:9003"]

[upstreams.web.health_check]
kind = "tcp"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 3

[[routes]]
upstream = "web"
"#;

fn err(text: &str) -> String {
    Config::from_toml_str(text, "lb.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn the_documented_example_loads() {
    let c = Config::from_toml_str(GOOD, "lb.toml").unwrap();
    let web = &c.upstreams["web"];
    assert_eq!(web.backends.len(), 3);
    assert_eq!(web.backends[1].weight().get(), 2);
    assert_eq!(web.backends[2].name(), "[::1]:9003");
    let hc = web.health_check.as_ref().unwrap().get_ref();
    assert_eq!(hc.timeout.get(), Duration::from_millis(500));
    assert_eq!((hc.rise.get(), hc.fall.get()), (2, 3));
    assert_eq!(c.server.grace_period.get(), Duration::from_secs(10));
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let text = GOOD.replace("rise = 2", "rise = 2\nrsie = 4");
    let e = err(&text);
    assert!(
        e.starts_with("lb.toml:14:1: upstreams.web.health_check"),
        "{e}"
    );
    assert!(e.contains("unknown field `rsie`"), "{e}");
}

#[test]
fn malformed_durations_name_the_key() {
    let e = err(&GOOD.replace("\"500ms\"", "\"5 parsecs\""));
    assert!(
        e.starts_with("lb.toml:12:11: upstreams.web.health_check.timeout: invalid duration"),
        "{e}"
    );
}

#[test]
fn routes_to_undefined_upstreams_are_refused() {
    let e = err(&GOOD.replace("upstream = \"web\"", "upstream = \"api\""));
    assert!(
        e.starts_with("lb.toml:17:12: routes[0].upstream: upstream `api` is not defined"),
        "{e}"
    );
}

#[test]
fn bad_backends_and_weights_are_refused_at_their_line() {
    let e = err(&GOOD.replace("\"127.0.0.1:9001\"", "\"127.0.0.1\""));
    assert!(e.starts_with("lb.toml:7:"), "{e}");
    assert!(e.contains("upstreams.web.backends"), "{e}");
    assert!(e.contains("`127.0.0.1`"), "{e}");
    let e = err(&GOOD.replace("weight = 2", "weight = 0"));
    assert!(e.starts_with("lb.toml:7:"), "{e}");
    assert!(e.contains("nonzero"), "{e}");
}

#[test]
fn syntax_errors_have_a_position() {
    let e = err("[server\nlisten = []");
    assert!(e.starts_with("lb.toml:1:"), "{e}");
}

#[test]
fn an_empty_route_table_is_refused() {
    let text = GOOD.replace("[[routes]]\nupstream = \"web\"\n", "");
    assert!(err(&text).contains("no [[routes]]"));
}

#[test]
fn zero_intervals_and_timeouts_are_refused() {
    let e = err(&GOOD.replace("interval = \"1s\"", "interval = \"0s\""));
    assert!(
        e.starts_with(
            "lb.toml:11:12: upstreams.web.health_check.interval: must be greater than zero"
        ),
        "{e}"
    );
}

#[test]
fn empty_lists_are_refused_at_their_own_line() {
    let e = err(&GOOD.replace("[\"127.0.0.1:8080\"]", "[]"));
    assert!(
        e.starts_with("lb.toml:3:10: server.listen: needs at least one address"),
        "{e}"
    );
    let line = GOOD.lines().find(|l| l.starts_with("backends")).unwrap();
    let e = err(&GOOD.replace(line, "backends = []"));
    assert!(
        e.starts_with("lb.toml:7:12: upstreams.web.backends: needs at least one backend"),
        "{e}"
    );
}

#[test]
fn one_address_listed_twice_is_refused() {
    let e = err(&GOOD.replace(
        "\"[::1]:9003\"",
        "{ addr = \"127.0.0.1:9001\", weight = 3 }",
    ));
    assert!(e.starts_with("lb.toml:7:"), "{e}");
    assert!(e.contains("same address as `127.0.0.1:9001`"), "{e}");
}

#[test]
fn every_selection_kind_parses() {
    for kind in [
        "round_robin",
        "random",
        "p2c",
        "least_conn",
        "fnv",
        "consistent",
        "hash",
        "ip_hash",
        "maglev",
    ] {
        let c = Config::from_toml_str(&GOOD.replace("round_robin", kind), "lb.toml").unwrap();
        assert_eq!(c.upstreams["web"].selection.as_str(), kind);
    }
}

#[test]
fn hashing_options_are_checked_where_they_stand() {
    let with = |extra: &str, kind: &str| {
        GOOD.replace(
            "selection = \"round_robin\"",
            &format!("selection = \"{kind}\"\n{extra}"),
        )
    };
    let ok = Config::from_toml_str(
        &with(
            "hash_key = \"cookie:session\"\nbalance_factor = 1.25\nmaglev_table_size = 65537",
            "maglev",
        ),
        "lb.toml",
    )
    .unwrap();
    assert_eq!(
        ok.upstreams["web"]
            .hash_key
            .as_ref()
            .unwrap()
            .get_ref()
            .to_string(),
        "cookie:session"
    );

    let e = err(&with("hash_key = \"query:k\"", "round_robin"));
    assert!(
        e.starts_with(
            "lb.toml:7:12: upstreams.web.hash_key: has no effect with selection `round_robin`"
        ),
        "{e}"
    );
    let e = err(&with("hash_key = \"client_ip\"", "ip_hash"));
    assert!(
        e.contains("ip_hash always hashes the client address"),
        "{e}"
    );
    let e = err(&with("balance_factor = 1.5", "hash"));
    assert!(
        e.contains("upstreams.web.balance_factor: has no effect with selection `hash`"),
        "{e}"
    );
    let e = err(&with("balance_factor = 0.9", "consistent"));
    assert!(
        e.starts_with("lb.toml:7:18: upstreams.web.balance_factor: balance factor must be"),
        "{e}"
    );
    let e = err(&with("maglev_table_size = 65536", "maglev"));
    assert!(e.contains("65536 is not a prime number"), "{e}");
    let e = err(&with("hash_key = \"body\"", "consistent"));
    assert!(
        e.contains("upstreams.web.hash_key: invalid hash key `body`"),
        "{e}"
    );
}

#[test]
fn slow_start_is_for_non_hashing_algorithms() {
    let with = |extra: &str, kind: &str| {
        GOOD.replace(
            "selection = \"round_robin\"",
            &format!("selection = \"{kind}\"\n{extra}"),
        )
    };
    let ok = Config::from_toml_str(
        &with(
            "slow_start = \"30s\"\nslow_start_min_percent = 25",
            "least_conn",
        ),
        "lb.toml",
    )
    .unwrap();
    assert_eq!(
        ok.upstreams["web"]
            .slow_start
            .as_ref()
            .unwrap()
            .get_ref()
            .get(),
        Duration::from_secs(30)
    );
    assert_eq!(ok.upstreams["web"].slow_start_min_percent.0, 25);
    let e = err(&with("slow_start = \"30s\"", "consistent"));
    assert!(
        e.starts_with(
            "lb.toml:7:14: upstreams.web.slow_start: not available with selection `consistent`"
        ),
        "{e}"
    );
    let e = err(&with("slow_start_min_percent = 0", "random"));
    assert!(
        e.contains("upstreams.web.slow_start_min_percent: 0 is not a percentage"),
        "{e}"
    );
}

const DISC: &str = r#"
[server]
listen = ["127.0.0.1:8080"]

[upstreams.web]
discovery = { kind = "dns", name = "app.internal", port = 8080, resolver = "tcp://127.0.0.1:5353", min_refresh = "2s", max_refresh = "1m" }

[[routes]]
upstream = "web"
"#;

#[test]
fn discovery_kinds_parse_with_their_keys() {
    let c = Config::from_toml_str(DISC, "lb.toml").unwrap();
    let d = c.upstreams["web"].discovery.as_ref().unwrap().get_ref();
    assert_eq!(d.kind, DiscoveryKind::Dns);
    assert_eq!(d.resolver.unwrap().to_string(), "tcp://127.0.0.1:5353");
    for table in [
        r#"{ kind = "dns_srv", name = "_http._tcp.app.internal" }"#,
        r#"{ kind = "etcd", endpoints = ["http://127.0.0.1:2379"], prefix = "/lb/web/" }"#,
        r#"{ kind = "file", path = "/etc/lb/web.toml" }"#,
        r#"{ kind = "static", backends = ["127.0.0.1:9001"] }"#,
    ] {
        let text = DISC.replace(
            DISC.lines().nth(5).unwrap(),
            &format!("discovery = {table}"),
        );
        Config::from_toml_str(&text, "lb.toml").unwrap_or_else(|e| panic!("{table}: {e}"));
    }
}

#[test]
fn discovery_mistakes_name_the_key() {
    let line = DISC.lines().nth(5).unwrap();
    let with = |table: &str| DISC.replace(line, &format!("discovery = {table}"));
    let cases = [
        (
            r#"{ kind = "dns", name = "app" }"#,
            "upstreams.web.discovery: kind = \"dns\" needs `port`",
        ),
        (
            r#"{ kind = "etcd", endpoints = ["http://e:2379"], prefix = "/p/", port = 1 }"#,
            "`port` does not apply to kind = \"etcd\"",
        ),
        (
            r#"{ kind = "etcd", endpoints = [], prefix = "/p/" }"#,
            "`endpoints` needs at least one URL",
        ),
        (
            r#"{ kind = "etcd", endpoints = ["http://e:2379"], prefix = "" }"#,
            "`prefix` must not be empty",
        ),
        (
            r#"{ kind = "dns_srv", name = "x", min_refresh = "1m", max_refresh = "1s" }"#,
            "`min_refresh` is longer than `max_refresh`",
        ),
        (
            r#"{ kind = "dns", name = "a", port = 1, resolver = "ftp://1.2.3.4:53" }"#,
            "unknown resolver scheme `ftp`",
        ),
        (r#"{ kind = "zookeeper" }"#, "unknown variant `zookeeper`"),
        (
            r#"{ kind = "file", path = "/x.toml", pth = "/y" }"#,
            "unknown field `pth`",
        ),
    ];
    for (table, want) in cases {
        let e = err(&with(table));
        assert!(e.starts_with("lb.toml:6:"), "{table}: {e}");
        assert!(e.contains(want), "{table}: want {want:?} in {e}");
    }
    let both = DISC.replace("[[routes]]", "backends = [\"127.0.0.1:1\"]\n\n[[routes]]");
    let e = err(&both);
    assert!(
        e.contains("set either `backends` or `discovery`, not both"),
        "{e}"
    );
    let neither = DISC.replace(line, "");
    assert!(err(&neither).contains("needs `backends` or `discovery`"));
}

#[test]
fn health_check_kinds_take_their_keys() {
    let http = GOOD.replace(
        "kind = \"tcp\"",
        "kind = \"http\"\npath = \"/healthz\"\nmethod = \"HEAD\"\nhost = \"app\"\nexpect_status = \"2xx,404\"\n\
         expect_body = \"ok\"\nreuse_connection = true\ntls = true\nsni = \"app.internal\"\nunhealthy_interval = \"5s\"\njitter = 0.2\n\
         headers = { x-probe = \"lb\" }",
    );
    let c = Config::from_toml_str(&http, "lb.toml").unwrap();
    let hc = c.upstreams["web"].health_check.as_ref().unwrap().get_ref();
    assert_eq!(hc.kind, HealthCheckKind::Http);
    assert!(hc.uses_tls());
    assert_eq!(hc.expect_status.unwrap().0.to_string(), "2xx,404");
    let tls = GOOD.replace(
        "kind = \"tcp\"",
        "kind = \"tls\"\nalpn = [\"h2\"]\nverify = false\nport = 8443",
    );
    Config::from_toml_str(&tls, "lb.toml").unwrap();
}

#[test]
fn health_check_keys_of_other_kinds_are_refused_at_the_table() {
    let cases = [
        (
            "kind = \"tcp\"\npath = \"/\"",
            "`path` applies to kind = \"http\" only, not \"tcp\"",
        ),
        (
            "kind = \"http\"\nsni = \"x\"",
            "`sni` applies to TLS checks only",
        ),
        (
            "kind = \"tls\"\nclient_cert = \"/c.pem\"",
            "`client_cert` and `client_key` go together",
        ),
        (
            "kind = \"tls\"\nverify = false\nca_file = \"/ca.pem\"",
            "`verify = false` ignores `ca_file`",
        ),
        (
            "kind = \"http\"\nexpect_status = \"2xx,7xx\"",
            "upstreams.web.health_check.expect_status",
        ),
        ("kind = \"http\"\njitter = 2.0", "jitter is a fraction"),
    ];
    for (keys, want) in cases {
        let e = err(&GOOD.replace("kind = \"tcp\"", keys));
        assert!(e.starts_with("lb.toml:"), "{e}");
        assert!(e.contains(want), "{keys}: want {want:?} in {e}");
    }
}

#[test]
fn passive_health_needs_a_trigger() {
    let with = |table: &str| {
        GOOD.replace(
            "[[routes]]",
            &format!("[upstreams.web.passive]\n{table}\n\n[[routes]]"),
        )
    };
    let c = Config::from_toml_str(
        &with(
            "max_fails = 3\nfail_timeout = \"10s\"\nconsecutive_5xx = 5\nmax_ejection_percent = 50",
        ),
        "lb.toml",
    )
    .unwrap();
    let p = c.upstreams["web"]
        .passive
        .as_ref()
        .unwrap()
        .get_ref()
        .to_passive();
    assert_eq!(p.max_ejection_percent, 50);
    let e = err(&with("fail_timeout = \"10s\""));
    assert!(e.contains("upstreams.web.passive: set `max_fails`"), "{e}");
    let e = err(&with("max_fails = 1\nmax_ejection_percent = 150"));
    assert!(e.contains("percentage"), "{e}");
}

#[test]
fn health_check_tls_files_are_relative_to_the_config_file() {
    let text = r#"
        [server]
        listen = ["127.0.0.1:8080"]
        [upstreams.web]
        backends = ["127.0.0.1:9001"]
        [upstreams.web.health_check]
        kind = "tls"
        ca_file = "certs/ca.pem"
        [[routes]]
        upstream = "web"
    "#;
    let config = Config::from_toml_str(text, "/etc/lb/lb.toml").unwrap();
    let hc = config.upstreams["web"]
        .health_check
        .as_ref()
        .unwrap()
        .get_ref();
    assert_eq!(
        hc.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/lb/certs/ca.pem"))
    );
}

#[test]
fn process_settings_resolve_against_the_file_and_log_format_is_checked() {
    let text = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\npid_file = \"run/lb.pid\"\nerror_log = \"/var/log/lb.log\"\n\
         upgrade_sock = \"up.sock\"\nlog_format = \"json\"",
    );
    let c = Config::from_toml_str(&text, "/etc/lb/lb.toml").unwrap();
    assert_eq!(
        c.server.pid_file.as_deref(),
        Some(Path::new("/etc/lb/run/lb.pid"))
    );
    assert_eq!(
        c.server.error_log.as_deref(),
        Some(Path::new("/var/log/lb.log"))
    );
    assert_eq!(
        c.server.upgrade_sock.as_deref(),
        Some(Path::new("/etc/lb/up.sock"))
    );
    assert_eq!(c.server.log_format, LogFormat::Json);
    let defaults = Config::from_toml_str(GOOD, "lb.toml").unwrap();
    assert_eq!(defaults.server.log_format, LogFormat::Text);
    assert!(defaults.server.pid_file.is_none() && defaults.server.upgrade_sock.is_none());

    let bad = err(&GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\nlog_format = \"xml\"",
    ));
    assert!(
        bad.contains("lb.toml:4:14: server.log_format: unknown variant `xml`"),
        "{bad}"
    );
}

#[test]
fn a_non_loopback_admin_needs_a_token() {
    let with_admin = |admin: &str| format!("{GOOD}\n[admin]\n{admin}\n");
    for ok in [
        "",
        "listen = \"127.0.0.1:0\"",
        "listen = \"[::1]:9901\"",
        "listen = \"0.0.0.0:9901\"\ntoken = \"s3cret\"",
    ] {
        Config::from_toml_str(&with_admin(ok), "lb.toml").unwrap();
    }
    for exposed in [
        "listen = \"0.0.0.0:9901\"",
        "listen = \"10.0.0.5:9901\"",
        "listen = \"[::]:9901\"",
    ] {
        let e = err(&with_admin(exposed));
        assert!(
            e.starts_with("lb.toml:19:1: admin.listen: ")
                && e.contains("is not a loopback address: set `token`"),
            "{exposed}: {e}"
        );
    }
}
