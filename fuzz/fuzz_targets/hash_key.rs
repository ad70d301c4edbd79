//! Hash-key extraction (`hash_key = "uri" | "path" | "client_ip" | "header:NAME" |
//! "cookie:NAME" | "query:NAME"`): fuzzed key texts are parsed and fuzzed requests hashed.
//!
//! Checks: nothing panics; a parsed key prints back to a text that parses to the same key;
//! the extracted bytes are what the key names: the request target or path, the first value
//! of the header, the client's 4 or 16 address octets, or a slice of the query or of one
//! `Cookie` header that follows `name=` (name compared ignoring ASCII case, as nginx) and
//! contains no separator.

#![no_main]

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use http::header::COOKIE;
use lb_fuzz::request::FuzzRequest;
use lb_fuzz::words;
use lb_proxy::hash_key::{Extract as _, HashKey};
use libfuzzer_sys::fuzz_target;

/// A key text and a request.
#[derive(Debug, Arbitrary)]
struct Input {
    #[arbitrary(with = key_text)]
    key: String,
    request: FuzzRequest,
}

/// Usually `kind:NAME` with a name from the vocabularies, sometimes any text.
fn key_text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let kind = words::pick(
        u,
        &[
            "uri",
            "path",
            "client_ip",
            "header:",
            "cookie:",
            "query:",
            "body:",
        ],
    )?;
    if !kind.ends_with(':') {
        return Ok(kind);
    }
    let name = if kind == "header:" {
        words::header_name(u)?
    } else {
        words::name(u)?
    };
    Ok(kind + &name)
}

fuzz_target!(|input: Input| {
    let Ok(key) = input.key.parse::<HashKey>() else {
        return;
    };
    let shown = key.to_string();
    match shown.parse::<HashKey>() {
        Ok(again) => assert_eq!(again, key, "`{}` prints as `{shown}`", input.key),
        Err(err) => panic!(
            "`{}` prints as `{shown}`, which does not parse: {err}",
            input.key
        ),
    }

    let parts = input.request.parts();
    let client = input.request.client();
    let mut scratch = [0u8; 16];
    let got = key.extract(&parts, client, &mut scratch);
    match &key {
        HashKey::Uri => {
            let want = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            assert_eq!(got, want.as_bytes());
        }
        HashKey::Path => assert_eq!(got, parts.uri.path().as_bytes()),
        HashKey::Header(name) => {
            let want = parts.headers.get(name).map_or(&b""[..], |v| v.as_bytes());
            assert_eq!(got, want);
        }
        HashKey::ClientIp => match client {
            IpAddr::V4(v4) => assert_eq!(got, v4.octets()),
            IpAddr::V6(v6) => assert_eq!(got, v6.octets()),
        },
        HashKey::Query(name) => {
            let query = parts.uri.query().unwrap_or("");
            assert!(
                got.is_empty() || is_value_of(got, query, '&', name),
                "{got:?} is not a value of `{name}` in the query `{query}`"
            );
        }
        HashKey::Cookie(name) => {
            let found = parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|c| is_value_of(got, c, ';', name));
            assert!(
                got.is_empty() || found,
                "{got:?} is not a value of cookie `{name}` in {:?}",
                parts.headers.get_all(COOKIE)
            );
        }
    }
});

/// True when `value` lies inside `text`, right after `NAME=` at the start of a
/// `sep`-separated pair (name ignoring ASCII case and leading whitespace), and holds no
/// `sep`.
fn is_value_of(value: &[u8], text: &str, sep: char, name: &str) -> bool {
    let base = text.as_ptr() as usize;
    let start = value.as_ptr() as usize;
    if start < base || start + value.len() > base + text.len() {
        return false;
    }
    let Some(before) = text.get(..start - base) else {
        return false;
    };
    let Some(pair) = before.strip_suffix('=') else {
        return false;
    };
    let pair_name = pair.rsplit(sep).next().unwrap_or(pair).trim_start();
    !pair_name.contains('=')
        && pair_name.eq_ignore_ascii_case(name)
        && !value.contains(&(sep as u8))
}
