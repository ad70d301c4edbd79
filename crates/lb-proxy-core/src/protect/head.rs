//! Checks on a request head before the proxy acts on it: what hyper's parser lets through
//! but a reverse proxy must not forward (request smuggling, open-proxy use, oversized
//! targets and header lists).
//!
//! Before hyper parses an HTTP/1.x head, the framing check (`framing/`) has refused the
//! framing a backend could read differently (`Content-Length` with `Transfer-Encoding`, two
//! `Content-Length`s, bare LF, obs-fold); hyper itself refuses invalid names and values. A
//! refused head reaches [`inspect`] as a stand-in request carrying the [`Refusal`] in its
//! extensions, and is refused with it first.
//! The checks here need the parsed request: `Host`, `CONNECT` and the sizes (HTTP/2 too), and
//! for HTTP/1.x the `Transfer-Encoding` and `Content-Length` rules again (cheap, and the only
//! check on a connection the framing check stopped following). They read the head in place (no
//! allocation except to rewrite `Host` of an absolute-form request that disagrees with it).

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};
use http_body::SizeHint;

use super::framing::Refusal;
use super::{Rejection, RequestLimits};

/// Checks `req` (and normalises its `Host`); `Err` is the answer to send instead of
/// forwarding it, after which the connection is closed.
pub(crate) fn inspect(
    req: &mut Parts,
    body: &SizeHint,
    limits: &RequestLimits,
) -> Result<(), Rejection> {
    // The framing check refused the head this request stands in for (`framed_io.rs`).
    if let Some(why) = req.extensions.get::<Refusal>() {
        return Err(why.rejection());
    }
    if req.method == Method::CONNECT {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed: CONNECT is not served (this is not a forward proxy)\n",
        ));
    }
    if target_len(req) > limits.max_uri_length {
        return Err(Rejection::new(
            StatusCode::URI_TOO_LONG,
            "414 URI Too Long\n",
        ));
    }
    if req.headers.len() > limits.max_headers {
        return Err(Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "431 Request Header Fields Too Large: too many header fields\n",
        ));
    }
    if req.version < Version::HTTP_2 {
        framing(req)?;
    }
    host(req)?;
    if body.exact().is_some_and(|n| n > limits.max_body_size) {
        return Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Content Too Large\n",
        ));
    }
    Ok(())
}

/// The length of the request target as it counts against `max_uri_length`: path and
/// query, plus the authority when the request has one (absolute form, HTTP/2).
fn target_len(req: &Parts) -> usize {
    let pq = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let authority = req.uri.authority().map_or(0, |a| a.as_str().len());
    pq + authority
}

fn bad_request(text: &'static str) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, text)
}

/// HTTP/1.x body framing: one `Transfer-Encoding` field saying exactly `chunked`, or one
/// `Content-Length` of digits, or neither. hyper accepts `gzip, chunked`, `chunked,
/// chunked` and several `Transfer-Encoding` lines as long as the last coding is chunked;
/// the proxy would then forward a body whose coding the backend is not told about.
fn framing(req: &Parts) -> Result<(), Rejection> {
    // Most requests carry neither field: one pass over the names (no hashing) says which to
    // look up.
    let present = crate::headers::present(&req.headers, |name| match name {
        "transfer-encoding" => Some(0),
        "content-length" => Some(1),
        _ => None,
    });
    if present == 0 {
        return Ok(());
    }
    let mut te = req.headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        let chunked = |v: &HeaderValue| {
            v.to_str()
                .is_ok_and(|s| s.trim().eq_ignore_ascii_case("chunked"))
        };
        if te.next().is_some() || !chunked(first) {
            return Err(bad_request(
                "400 Bad Request: Transfer-Encoding must be exactly \"chunked\"\n",
            ));
        }
    }
    let mut cl = req.headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = cl.next() {
        let digits = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit);
        if cl.next().is_some() || !digits {
            return Err(bad_request("400 Bad Request: invalid Content-Length\n"));
        }
    }
    Ok(())
}

/// `Host`: exactly one on HTTP/1.1 (RFC 9112 section 3.2: 400 otherwise), at most one
/// elsewhere. With a URI authority (absolute form, HTTP/2 `:authority`) the authority is
/// what the router matched, so the backend must see the same: an HTTP/1.x `Host` that
/// differs is replaced by it (RFC 9112 section 3.2.2), an HTTP/2 one is malformed (RFC 9113
/// section 8.3.1).
fn host(req: &mut Parts) -> Result<(), Rejection> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(bad_request("400 Bad Request: more than one Host\n"));
    }
    let Some(authority) = req.uri.authority() else {
        if first.is_none() && req.version == Version::HTTP_11 {
            return Err(bad_request("400 Bad Request: Host is required\n"));
        }
        return Ok(());
    };
    match first {
        Some(h)
            if h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Ok(())
        }
        Some(_) if req.version >= Version::HTTP_2 => Err(bad_request(
            "400 Bad Request: Host differs from :authority\n",
        )),
        Some(_) => {
            let value = HeaderValue::from_str(authority.as_str())
                .map_err(|_| bad_request("400 Bad Request: invalid authority\n"))?;
            req.headers.insert(header::HOST, value);
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use http::Request;

    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_uri_length: 64,
            max_headers: 4,
            max_body_size: 100,
            body_read_timeout: Duration::from_secs(1),
        }
    }

    fn check(req: Request<()>, body: SizeHint) -> Result<Parts, StatusCode> {
        let (mut parts, ()) = req.into_parts();
        inspect(&mut parts, &body, &limits())
            .map(|()| parts)
            .map_err(|r| r.status)
    }

    fn get(uri: &str) -> http::request::Builder {
        Request::get(uri).version(Version::HTTP_11)
    }

    #[test]
    fn an_ordinary_request_passes_untouched() {
        let parts = check(
            get("/a?b").header("host", "x").body(()).unwrap(),
            SizeHint::with_exact(0),
        )
        .unwrap();
        assert_eq!(parts.headers["host"], "x");
    }

    #[test]
    fn limits_give_414_431_and_413() {
        let long = format!("/{}", "a".repeat(64));
        let r = get(&long).header("host", "x").body(()).unwrap();
        assert_eq!(check(r, SizeHint::new()).unwrap_err(), 414);
        let mut many = get("/").header("host", "x");
        for i in 0..4 {
            many = many.header(format!("x-{i}"), "v");
        }
        assert_eq!(
            check(many.body(()).unwrap(), SizeHint::new()).unwrap_err(),
            431
        );
        let r = get("/").header("host", "x").body(()).unwrap();
        assert_eq!(check(r, SizeHint::with_exact(101)).unwrap_err(), 413);
        let r = get("/").header("host", "x").body(()).unwrap();
        assert!(check(r, SizeHint::with_exact(100)).is_ok());
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        for (values, ok) in [
            (&["chunked"][..], true),
            (&[" Chunked "], true),
            (&["gzip, chunked"], false),
            (&["chunked, chunked"], false),
            (&["identity", "chunked"], false),
            (&["chunked", "chunked"], false),
        ] {
            let mut r = Request::post("/").header("host", "x");
            for v in values {
                r = r.header("transfer-encoding", *v);
            }
            let result = check(r.body(()).unwrap(), SizeHint::new());
            assert_eq!(result.is_ok(), ok, "{values:?}");
        }
    }

    #[test]
    fn content_length_must_be_one_number() {
        for (values, ok) in [
            (&["5"][..], true),
            (&["5", "5"], false),
            (&["5, 5"], false),
            (&["+5"], false),
            (&[""], false),
        ] {
            let mut r = Request::post("/").header("host", "x");
            for v in values {
                r = r.header("content-length", *v);
            }
            assert_eq!(
                check(r.body(()).unwrap(), SizeHint::new()).is_ok(),
                ok,
                "{values:?}"
            );
        }
    }

    #[test]
    fn host_is_required_once_and_follows_the_authority() {
        let none = get("/").body(()).unwrap();
        assert_eq!(check(none, SizeHint::new()).unwrap_err(), 400);
        let two = get("/")
            .header("host", "a")
            .header("host", "b")
            .body(())
            .unwrap();
        assert_eq!(check(two, SizeHint::new()).unwrap_err(), 400);
        let old = Request::get("/")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        assert!(check(old, SizeHint::new()).is_ok());
        // Absolute form: the authority wins, as the router saw it.
        let abs = get("http://evil.example/").header("host", "good.example");
        let parts = check(abs.body(()).unwrap(), SizeHint::new()).unwrap();
        assert_eq!(parts.headers["host"], "evil.example");
        let h2 = Request::get("http://a.example/")
            .version(Version::HTTP_2)
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(check(h2, SizeHint::new()).unwrap_err(), 400);
    }

    #[test]
    fn connect_is_refused() {
        let r = Request::connect("evil.example:443")
            .header("host", "evil.example:443")
            .body(())
            .unwrap();
        assert_eq!(check(r, SizeHint::new()).unwrap_err(), 405);
    }
}
