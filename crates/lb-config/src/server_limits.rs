//! `[server.limits]`: what one client may cost the proxy (connections, head and body
//! sizes, how slowly it may send or read, HTTP/2 stream abuse). Every limit is on by
//! default; `docs/security.md` explains each against the attack it stops.
//!
//! Values are checked while the file loads, so a bad one is reported at its
//! `FILE:LINE:COLUMN: server.limits.KEY`.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::{ByteSize, PositiveDuration};

/// The smallest `max_header_size`: hyper's smallest HTTP/1 read buffer, which is what
/// bounds an HTTP/1.1 head.
const MIN_HEADER_SIZE: u64 = 8192;

/// The largest `max_header_size`: HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE is 32 bits, and
/// anything near it defeats the purpose of the limit.
const MAX_HEADER_SIZE: u64 = 16 << 20;

/// The smallest `max_uri_length`.
const MIN_URI_LENGTH: u64 = 16;

/// hyper answers 414 itself above this URI length, whatever the configuration says.
const MAX_URI_LENGTH: u64 = 65_534;

/// The most headers `max_headers` may allow (each costs a parser slot per request).
const MAX_HEADERS: u32 = 10_000;

/// `[server.limits]`: limits on what each client connection and request may use.
///
/// ```toml
/// [server.limits]
/// max_connections = 10000
/// max_uri_length = "8KiB"
/// max_header_size = "64KiB"
/// max_headers = 100
/// max_body_size = "1GiB"
/// header_read_timeout = "30s"
/// body_read_timeout = "60s"
/// keepalive_timeout = "75s"
/// send_timeout = "60s"
/// release_idle_after = "10ms"
/// h2_max_concurrent_streams = 128
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// Client connections served at once, over every listener. Beyond it the listeners
    /// stop accepting: new connections wait in the kernel's listen backlog (and are
    /// refused by the kernel when that is full) until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: NonZeroU32,
    /// The longest request target (the URI as sent); longer ones get 414.
    #[serde(default = "default_max_uri_length", deserialize_with = "uri_length")]
    pub max_uri_length: Spanned<ByteSize>,
    /// The largest request head: the request line and all headers (HTTP/1.1), or the
    /// header list as HTTP/2 counts it. Larger ones get 431.
    #[serde(default = "default_max_header_size", deserialize_with = "header_size")]
    pub max_header_size: ByteSize,
    /// The most header fields in one request; more get 431.
    #[serde(default = "default_max_headers", deserialize_with = "header_count")]
    pub max_headers: NonZeroU32,
    /// The largest request body; `0` means no limit. A larger `Content-Length` gets 413
    /// before anything is forwarded; a body that grows past it while streaming is cut
    /// off and answered 413 (the backend sees an incomplete request).
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
    /// How long a client has to send a complete request head (slowloris). Over HTTP/1.1
    /// the clock starts when the connection is ready for the next request, so it also
    /// bounds how long a keep-alive connection may sit idle.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: PositiveDuration,
    /// How long the proxy waits for the next piece of a request body (slow POST); past
    /// it the request gets 408 and the connection is closed.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: PositiveDuration,
    /// A connection with no request in progress and no byte moving either way for this
    /// long is closed (HTTP/1.1 keep-alive and HTTP/2 alike).
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: PositiveDuration,
    /// A client that takes none of the response for this long while the proxy has some
    /// to send (slow read) is disconnected.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: PositiveDuration,
    /// An HTTP/1.x connection (plain, or TLS once ALPN chose HTTP/1.1) with no request in
    /// progress for this long releases its HTTP state (hyper's buffers and connection,
    /// about 25 KiB) and keeps only its socket (about 2 KiB, and rustls's state over TLS)
    /// until the client sends again, which then costs
    /// a new HTTP connection object. Longer keeps more memory per idle client; shorter
    /// releases more often for clients that pause between requests.
    #[serde(default = "default_release_idle_after")]
    pub release_idle_after: PositiveDuration,
    /// HTTP/2: streams a client may have open at once on one connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[serde(default = "default_h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: NonZeroU32,
    /// HTTP/2 rapid reset (CVE-2023-44487): streams the client opened and reset before the
    /// proxy took them up; more than this at once and the connection is closed with
    /// GOAWAY ENHANCE_YOUR_CALM.
    #[serde(default = "default_h2_max_pending_accept_reset_streams")]
    pub h2_max_pending_accept_reset_streams: NonZeroU32,
    /// HTTP/2: streams the proxy had to reset because the client broke the protocol on
    /// them; more than this on one connection and it is closed with GOAWAY.
    #[serde(default = "default_h2_max_local_error_reset_streams")]
    pub h2_max_local_error_reset_streams: NonZeroU32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_uri_length: default_max_uri_length(),
            max_header_size: default_max_header_size(),
            max_headers: default_max_headers(),
            max_body_size: default_max_body_size(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            send_timeout: default_send_timeout(),
            release_idle_after: default_release_idle_after(),
            h2_max_concurrent_streams: default_h2_max_concurrent_streams(),
            h2_max_pending_accept_reset_streams: default_h2_max_pending_accept_reset_streams(),
            h2_max_local_error_reset_streams: default_h2_max_local_error_reset_streams(),
        }
    }
}

impl ServerLimits {
    /// Checks the values against each other; `Err` has the byte offset and key of the
    /// offending value and what is wrong.
    pub(crate) fn check(&self) -> Result<(), (usize, &'static str, String)> {
        let uri = self.max_uri_length.get_ref().0;
        if uri > self.max_header_size.0 {
            return Err((
                self.max_uri_length.span().start,
                "server.limits.max_uri_length",
                format!(
                    "{uri} bytes is more than max_header_size ({}): the request line is part of the head",
                    self.max_header_size.0
                ),
            ));
        }
        Ok(())
    }

    /// The body limit in bytes; `u64::MAX` when there is none.
    pub fn body_limit(&self) -> u64 {
        match self.max_body_size.0 {
            0 => u64::MAX,
            n => n,
        }
    }
}

/// Fails unless `size` is within `min..=max` bytes.
fn in_range<E: serde::de::Error>(
    size: ByteSize,
    min: u64,
    max: u64,
    what: &str,
) -> Result<ByteSize, E> {
    if !(min..=max).contains(&size.0) {
        return Err(E::custom(format!(
            "{} bytes is out of range: {what} must be from {min} to {max} bytes",
            size.0
        )));
    }
    Ok(size)
}

fn uri_length<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Spanned<ByteSize>, D::Error> {
    let size = Spanned::<ByteSize>::deserialize(deserializer)?;
    in_range::<D::Error>(
        *size.get_ref(),
        MIN_URI_LENGTH,
        MAX_URI_LENGTH,
        "max_uri_length",
    )?;
    Ok(size)
}

fn header_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
    let size = ByteSize::deserialize(deserializer)?;
    in_range(size, MIN_HEADER_SIZE, MAX_HEADER_SIZE, "max_header_size")
}

fn header_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroU32, D::Error> {
    let n = NonZeroU32::deserialize(deserializer)?;
    if n.get() > MAX_HEADERS {
        return Err(serde::de::Error::custom(format!(
            "{n} is more than {MAX_HEADERS} headers"
        )));
    }
    Ok(n)
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn default_max_connections() -> NonZeroU32 {
    nonzero(10_000)
}

fn default_max_uri_length() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(8 << 10))
}

fn default_max_header_size() -> ByteSize {
    ByteSize(64 << 10)
}

fn default_max_headers() -> NonZeroU32 {
    nonzero(100)
}

fn default_max_body_size() -> ByteSize {
    ByteSize(1 << 30)
}

fn default_header_read_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(30))
}

fn default_body_read_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}

fn default_keepalive_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(75))
}

fn default_send_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}

fn default_release_idle_after() -> PositiveDuration {
    PositiveDuration(Duration::from_millis(10))
}

fn default_h2_max_concurrent_streams() -> NonZeroU32 {
    nonzero(128)
}

fn default_h2_max_pending_accept_reset_streams() -> NonZeroU32 {
    nonzero(20)
}

fn default_h2_max_local_error_reset_streams() -> NonZeroU32 {
    nonzero(1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::Config;

    fn with_limits(limits: &str) -> Result<Config, String> {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[server.limits]\n{limits}\n\n\
             [upstreams.web]\nbackends = [\"127.0.0.1:9001\"]\n\n[[routes]]\nupstream = \"web\"\n"
        );
        Config::from_toml_str(&text, "lb.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_on() {
        let c = with_limits("").unwrap();
        let l = &c.server.limits;
        assert_eq!(l.max_connections.get(), 10_000);
        assert_eq!(l.max_uri_length.get_ref().0, 8192);
        assert_eq!(l.max_header_size.0, 65_536);
        assert_eq!(l.max_headers.get(), 100);
        assert_eq!(l.body_limit(), 1 << 30);
        assert_eq!(l.header_read_timeout.get().as_secs(), 30);
        assert_eq!(l.body_read_timeout.get().as_secs(), 60);
        assert_eq!(l.keepalive_timeout.get().as_secs(), 75);
        assert_eq!(l.send_timeout.get().as_secs(), 60);
        assert_eq!(l.release_idle_after.get().as_millis(), 10);
        assert_eq!(l.h2_max_concurrent_streams.get(), 128);
        assert_eq!(l.h2_max_pending_accept_reset_streams.get(), 20);
        assert_eq!(l.h2_max_local_error_reset_streams.get(), 1024);
    }

    #[test]
    fn a_full_table_loads_and_zero_body_size_means_unlimited() {
        let c = with_limits(
            "max_connections = 5\nmax_uri_length = 100\nmax_header_size = \"16KiB\"\n\
             max_headers = 20\nmax_body_size = 0\nheader_read_timeout = \"1s\"\n\
             body_read_timeout = \"2s\"\nkeepalive_timeout = \"3s\"\nsend_timeout = \"4s\"\n\
             release_idle_after = \"250ms\"\nh2_max_concurrent_streams = 10\nh2_max_pending_accept_reset_streams = 5\n\
             h2_max_local_error_reset_streams = 6",
        )
        .unwrap();
        let l = &c.server.limits;
        assert_eq!(l.max_connections.get(), 5);
        assert_eq!(l.max_uri_length.get_ref().0, 100);
        assert_eq!(l.max_header_size.0, 16_384);
        assert_eq!(l.body_limit(), u64::MAX);
        assert_eq!(l.send_timeout.get().as_secs(), 4);
        assert_eq!(l.release_idle_after.get().as_millis(), 250);
    }

    #[test]
    fn bad_values_name_file_line_column_and_key() {
        let cases = [
            ("max_connections = 0", "lb.toml:5:19: server.limits.max_connections: invalid value: integer `0`, expected a nonzero u32"),
            ("max_header_size = 10", "lb.toml:5:19: server.limits.max_header_size: 10 bytes is out of range: max_header_size must be from 8192 to 16777216 bytes"),
            ("max_uri_length = \"1MiB\"", "lb.toml:5:18: server.limits.max_uri_length: 1048576 bytes is out of range: max_uri_length must be from 16 to 65534 bytes"),
            ("max_headers = 20000", "lb.toml:5:15: server.limits.max_headers: 20000 is more than 10000 headers"),
            ("max_body_size = \"lots\"", "lb.toml:5:17: server.limits.max_body_size: invalid size \"lots\""),
            ("header_read_timeout = \"0s\"", "lb.toml:5:23: server.limits.header_read_timeout: must be greater than zero"),
            ("body_read_timeout = 5", "lb.toml:5:21: server.limits.body_read_timeout: invalid type: integer `5`, expected a duration"),
            ("max_header_size = \"8KiB\"\nmax_uri_length = \"9KiB\"", "lb.toml:6:18: server.limits.max_uri_length: 9216 bytes is more than max_header_size (8192)"),
            ("max_body = 1", "lb.toml:5:1: server.limits.max_body: unknown field `max_body`"),
        ];
        for (limits, expected) in cases {
            let e = with_limits(limits).unwrap_err();
            assert!(
                e.starts_with(expected),
                "{limits}:\n  got      {e}\n  expected {expected}"
            );
        }
    }
}
