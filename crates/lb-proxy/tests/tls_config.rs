//! TLS listener configuration through the public API and `lb-proxy -t`: every error names
//! the file, line, column and key; relative paths follow the configuration file.

#![allow(clippy::unwrap_used)] // tests: failures are test failures

mod tls_kit;

use std::process::Command;

use lb_proxy::config::Config;

use tls_kit::{Ca, Dir, Leaf};

/// A CA, and in `dir`: `a.pem`/`a.key` for a.example.com, `b.pem`/`b.key` for
/// b.example.com and *.b.example.com.
struct Pki {
    ca: Ca,
    a: Leaf,
    b: Leaf,
}

fn pki(dir: &Dir) -> Pki {
    let ca = Ca::new("test CA");
    let a = ca.server(&["a.example.com"]);
    let b = ca.server(&["b.example.com", "*.b.example.com"]);
    dir.write_leaf("a", &a);
    dir.write_leaf("b", &b);
    Pki { ca, a, b }
}

/// `from_toml_str` errors for `[server]` text in a directory with the usual files.
fn config_error(dir: &Dir, server: &str) -> String {
    let text = format!(
        "[server]\n{server}\n\n[upstreams.web]\nbackends = [\"127.0.0.1:1\"]\n\n\
         [[routes]]\nupstream = \"web\"\n"
    );
    Config::from_toml_str(&text, dir.path().join("lb.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let dir = Dir::new();
    let pki = pki(&dir);
    let nameless = pki.ca.server(&["127.0.0.1"]);
    dir.write_leaf("ip-only", &nameless);
    dir.write("garbage.pem", "not PEM at all\n");
    let file = dir.path().join("lb.toml");
    let file = file.display();
    let listener = |rest: &str| format!("[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{rest}");
    let cases = [
        (
            listener("certificates = [{ cert = \"missing.pem\", key = \"a.key\" }]"),
            format!("{file}:4:26: server.tls[0].certificates[0].cert: cannot read certificate file"),
        ),
        (
            listener("certificates = [{ cert = \"garbage.pem\", key = \"a.key\" }]"),
            "server.tls[0].certificates[0].cert: no PEM certificate in".into(),
        ),
        (
            listener("certificates = [\n  { cert = \"a.pem\", key = \"a.key\" },\n  { cert = \"b.pem\", key = \"a.key\" },\n]"),
            format!("{file}:6:27: server.tls[0].certificates[1].key: the private key in"),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"nokey.key\" }]"),
            "server.tls[0].certificates[0].key: cannot read a private key from".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\" }, { cert = \"ip-only.pem\", key = \"ip-only.key\" }]"),
            "server.tls[0].certificates[1]: the certificate in".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\", sni = [\"x.test\"] }, { cert = \"b.pem\", key = \"b.key\", sni = [\"X.test\"] }]"),
            "server.tls[0].certificates[1]: x.test is already in the `sni` of certificates[0]".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\ndefault_certificate = 1"),
            format!("{file}:5:23: server.tls[0].default_certificate: index 1 is out of range"),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\nclient_auth = { ca_file = \"garbage.pem\" }"),
            "server.tls[0].client_auth.ca_file: the CA certificates in".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\", sni = [\"a..b\"] }]"),
            "server.tls[0].certificates[0].sni[0]: \"a..b\" is not a DNS name".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\nmin_version = \"1.1\""),
            "server.tls[0].min_version: unknown variant `1.1`".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\nalpn = [\"h3\"]"),
            "server.tls[0].alpn[0]: unknown variant `h3`".into(),
        ),
        (
            listener("certificates = []"),
            "server.tls[0].certificates: needs at least one".into(),
        ),
        (
            listener("certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\nhandshake_timeout = \"0s\""),
            "server.tls[0].handshake_timeout: must be greater than zero".into(),
        ),
        (
            "listen = []".into(),
            format!("{file}:2:10: server.listen: needs at least one address (or a [[server.tls]] listener)"),
        ),
        (
            "grace_period = \"1s\"".into(),
            format!("{file}:1:1: server.listen: needs at least one address"),
        ),
    ];
    let mut failed = Vec::new();
    for (server, want) in cases {
        let e = config_error(&dir, &server);
        if !e.contains(&want) || !e.starts_with(&file.to_string()) {
            failed.push(format!("want {want:?} in\n{e}\nfor\n{server}\n"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn dash_t_checks_listener_certificates_relative_to_the_file() {
    let dir = Dir::new();
    let pki = pki(&dir);
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    dir.write_leaf("certs/a", &pki.a);
    dir.write("certs/b.key", &pki.b.key_pem);
    let config = |key: &str| {
        format!(
            "[server]\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n\
             certificates = [{{ cert = \"certs/a.pem\", key = \"certs/{key}\" }}]\n\n\
             [upstreams.web]\nbackends = [\"127.0.0.1:1\"]\n\n[[routes]]\nupstream = \"web\"\n"
        )
    };
    let run = |text: String| {
        let path = dir.write("lb.toml", &text);
        // Run from elsewhere: the paths follow the file, not the working directory.
        let out = Command::new(env!("CARGO_BIN_EXE_lb-proxy"))
            .args(["-t", "-c"])
            .arg(&path)
            .current_dir("/")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(config("a.key"));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = run(config("b.key"));
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "{}:4:47: server.tls[0].certificates[0].key: the private key in {} does not match the certificate in {}",
        dir.path().join("lb.toml").display(),
        dir.path().join("certs/b.key").display(),
        dir.path().join("certs/a.pem").display(),
    );
    assert!(stderr.contains(&want), "want {want:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
