//! HTTP/2 abuse (h2c, prior knowledge): rapid reset (CVE-2023-44487) with the `h2` crate,
//! and, with raw frames (the `h2` crate cannot send them), SETTINGS and PING floods,
//! an oversized header list and a CONTINUATION flood. Each asserts how the proxy answers
//! (GOAWAY ENHANCE_YOUR_CALM, 431, or the connection closed once the client stops
//! reading), that no backend request comes of it, that the proxy's memory stays bounded,
//! and that a well-behaved client keeps getting 200s.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_support;

use std::net::SocketAddr;
use std::time::Duration;

use common::Harness;
use hostile_support::GoodClient;
use http::Request;
use lb_testkit::TestBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame on the wire.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits set from `flags`.
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | u8::try_from(value).unwrap());
        return;
    }
    out.push(flags | u8::try_from(max).unwrap());
    value -= max;
    while value >= 128 {
        out.push(u8::try_from(value % 128).unwrap() | 0x80);
        value /= 128;
    }
    out.push(u8::try_from(value).unwrap());
}

/// A literal header field without indexing, with a new name.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// `GET /` for authority `a`: :method GET, :scheme http, :path / from the static table,
/// :authority as a literal with the static name.
fn get_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x01, 0x01, b'a']
}

/// A connection that has sent the preface and an empty SETTINGS frame.
async fn h2c(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&start).await.unwrap();
    s
}

/// What the server sent, frame by frame, until it closed or `within` passed.
struct Received {
    frames: Vec<(u8, u8, u32, Vec<u8>)>,
    closed: bool,
}

impl Received {
    fn goaway(&self) -> Option<u32> {
        self.frames
            .iter()
            .find(|f| f.0 == GOAWAY)
            .map(|f| u32::from_be_bytes(f.3[4..8].try_into().unwrap()))
    }

    /// The `:status` of the first response HEADERS on `stream`: an indexed status (0x88 =
    /// 200 ... 0x8e = 500) or a literal with the static name `:status` (index 8), its
    /// value plain or Huffman-coded, as h2 writes it.
    fn status(&self, stream: u32) -> Option<u16> {
        let block = &self
            .frames
            .iter()
            .find(|f| f.0 == HEADERS && f.2 == stream)?
            .3;
        let first = *block.first()?;
        if (0x88..=0x8e).contains(&first) {
            return [200, 204, 206, 304, 400, 404, 500]
                .get(usize::from(first - 0x88))
                .copied();
        }
        let len = usize::from(*block.get(1)? & 0x7f);
        let value = block.get(2..2 + len)?;
        let text = if block[1] & 0x80 != 0 {
            huffman_digits(value)?
        } else {
            String::from_utf8(value.to_vec()).ok()?
        };
        text.parse().ok()
    }

    fn setting(&self, id: u16) -> Option<u32> {
        let settings = self
            .frames
            .iter()
            .find(|f| f.0 == SETTINGS && f.1 & 1 == 0)?;
        settings.3.chunks(6).find_map(|s| {
            (u16::from_be_bytes([s[0], s[1]]) == id)
                .then(|| u32::from_be_bytes(s[2..6].try_into().unwrap()))
        })
    }
}

/// Decodes an HPACK Huffman string made of digits only (RFC 7541 appendix B: `0`-`2` are
/// 5-bit codes 00000-00010, `3`-`9` 6-bit codes 011001-011111; padding is all ones).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let value = |bits: &[u8]| bits.iter().fold(0u8, |v, b| v << 1 | b);
    let mut out = String::new();
    let mut at = 0;
    while at + 5 <= bits.len() {
        let five = value(&bits[at..at + 5]);
        if five <= 2 {
            out.push(char::from(b'0' + five));
            at += 5;
        } else if at + 6 <= bits.len() && (25..=31).contains(&value(&bits[at..at + 6])) {
            out.push(char::from(b'0' + value(&bits[at..at + 6]) - 22));
            at += 6;
        } else {
            break;
        }
    }
    bits[at..].iter().all(|&b| b == 1).then_some(out)
}

async fn read_frames(s: &mut TcpStream, within: Duration) -> Received {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut frames = Vec::new();
    let closed = loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let f: Vec<u8> = buf.drain(..9 + len).collect();
            let stream = u32::from_be_bytes(f[5..9].try_into().unwrap()) & 0x7fff_ffff;
            frames.push((f[3], f[4], stream, f[9..].to_vec()));
        }
        if frames.iter().any(|f| f.0 == GOAWAY) {
            break true;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    Received { frames, closed }
}

/// Resident memory of this process (the test and the in-process proxy), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The proxy with two upstreams: requests for host `a` (every attack here) go to the
/// returned backend, everything else (the good client's requests) to another; `limits`
/// is the `[server.limits]` table.
async fn start(limits: &str) -> (Harness, TestBackend, TestBackend, GoodClient) {
    let attacked = TestBackend::start("attacked").await;
    let other = TestBackend::start("other").await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"1s\"\n[server.limits]\n{limits}\n\
         [upstreams.attacked]\nbackends = [\"{}\"]\n[upstreams.web]\nbackends = [\"{}\"]\n\
         [[routes]]\nupstream = \"attacked\"\nhost = \"a\"\n[[routes]]\nupstream = \"web\"\n",
        attacked.addr(),
        other.addr()
    );
    let (h, _) = Harness::start(&toml).await;
    let good = GoodClient::start(h.url("/"), Duration::from_millis(20));
    (h, attacked, other, good)
}

/// The good client never failed during the attack, and is served after it.
async fn finish(h: Harness, good: GoodClient) {
    let (status, _) = h.get("/").await;
    assert_eq!(status, 200);
    let (ok, failed) = good.finish().await;
    assert!(
        ok >= 1 && failed == 0,
        "good client: {ok} ok, {failed} failed"
    );
    h.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_enhance_your_calm() {
    let (h, backend, _other, good) = start("").await;
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    let mut stopped = None;
    // Open a stream and cancel it at once, over and over: at most 10,000 times.
    for _ in 0..10_000 {
        client = match client.ready().await {
            Ok(c) => c,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        };
        let req = Request::get("http://a/").body(()).unwrap();
        match client.send_request(req, false) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the attacking connection is still open")
        .unwrap();
    // The proxy answers GOAWAY ENHANCE_YOUR_CALM and closes. When it closes while this
    // client is still writing, the client may see the broken pipe before the GOAWAY.
    let stopped = stopped.or(ended.err()).expect("the attack ran to its end");
    let calmed = stopped.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    println!(
        "rapid reset: connection closed after {sent} resets, {} reached the backend",
        backend.hits()
    );
    assert!(
        calmed || stopped.is_io(),
        "after {sent} resets: {stopped:?}"
    );
    assert!(sent < 10_000, "all 10,000 resets were accepted");
    // The cancelled streams cost the backends next to nothing.
    assert!(
        backend.hits() < 200,
        "{} backend requests from {sent} resets",
        backend.hits()
    );
    // A new HTTP/2 connection is served.
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let (resp, _) = client
        .send_request(Request::get(h.url("/")).body(()).unwrap(), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    finish(h, good).await;
}

/// Floods the connection with `one` (a SETTINGS or PING frame), never reading the acks:
/// the proxy stops reading when its acks back up, and `send_timeout` later it closes the
/// connection. Returns the frames written and how much the process's memory grew.
async fn flood(addr: SocketAddr, one: &[u8]) -> (usize, i64) {
    let before = rss_kib();
    let mut s = h2c(addr).await;
    let batch: Vec<u8> = one.repeat(1000);
    let mut written = 0;
    // 2,000,000 frames at most; far more than socket buffers hold.
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..2000 {
            if s.write_all(&batch).await.is_err() {
                return true;
            }
            written += 1000;
        }
        false
    })
    .await;
    let grown = i64::try_from(rss_kib()).unwrap() - i64::try_from(before).unwrap();
    assert_eq!(
        outcome,
        Ok(true),
        "the flooding connection was never closed ({written} frames)"
    );
    (written, grown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_bounded_and_cut_when_the_client_stops_reading() {
    let (h, backend, _other, good) = start("send_timeout = \"1s\"\n").await;
    let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let (written, grown) = flood(h.addr(), &settings).await;
    println!("SETTINGS flood: closed after {written} frames written, RSS grew {grown} KiB");
    assert!(
        grown < 64 * 1024,
        "SETTINGS flood: memory grew {grown} KiB ({written} frames)"
    );
    let ping = frame(PING, 0, 0, &[7; 8]);
    let (written, grown) = flood(h.addr(), &ping).await;
    println!("PING flood: closed after {written} frames written, RSS grew {grown} KiB");
    assert!(
        grown < 64 * 1024,
        "PING flood: memory grew {grown} KiB ({written} frames)"
    );
    assert_eq!(backend.hits(), 0);
    finish(h, good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_list_bombs_get_431_or_goaway_and_reach_no_backend() {
    let limits = "max_header_size = \"64KiB\"\nh2_max_concurrent_streams = 7\n";
    let (h, backend, _other, good) = start(limits).await;

    // The advertised limits.
    let mut s = h2c(h.addr()).await;
    let first = read_frames(&mut s, Duration::from_millis(300)).await;
    assert_eq!(
        first.setting(0x3),
        Some(7),
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    assert_eq!(
        first.setting(0x6),
        Some(64 * 1024),
        "SETTINGS_MAX_HEADER_LIST_SIZE"
    );

    // 80 KiB of headers in five frames (within the CONTINUATION count): 431.
    let mut block = get_block();
    for i in 0..800 {
        hpack_literal(&mut block, format!("x-bomb-{i:04}").as_bytes(), &[b'v'; 90]);
    }
    let pieces: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    let mut bytes = frame(HEADERS, END_STREAM, 1, pieces[0]);
    for (i, piece) in pieces.iter().enumerate().skip(1) {
        let flags = if i == pieces.len() - 1 {
            END_HEADERS
        } else {
            0
        };
        bytes.extend(frame(CONTINUATION, flags, 1, piece));
    }
    s.write_all(&bytes).await.unwrap();
    let got = read_frames(&mut s, Duration::from_secs(2)).await;
    let answered = got.status(1) == Some(431) || got.goaway().is_some();
    assert!(
        answered,
        "no 431 nor GOAWAY: {:?}",
        got.frames.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>()
    );

    // A CONTINUATION flood: one tiny header block spread over 100,000 frames.
    let before = rss_kib();
    let mut s = h2c(h.addr()).await;
    let mut bytes = frame(HEADERS, END_STREAM, 1, &get_block());
    let one = frame(CONTINUATION, 0, 1, &[0x00]);
    bytes.extend(one.repeat(100_000));
    let _ = s.write_all(&bytes).await;
    let got = read_frames(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got.goaway(), Some(ENHANCE_YOUR_CALM));
    assert!(got.closed);
    let grown = i64::try_from(rss_kib()).unwrap() - i64::try_from(before).unwrap();
    assert!(grown < 64 * 1024, "memory grew {grown} KiB");

    // The raw frames make a valid request when it is not a bomb: the same header block,
    // within the limits, is answered by the attacked upstream.
    let mut s = h2c(h.addr()).await;
    s.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_block()))
        .await
        .unwrap();
    let got = read_frames(&mut s, Duration::from_millis(500)).await;
    assert_eq!(got.status(1), Some(200));
    assert_eq!(backend.hits(), 1, "a bomb reached the backend");
    finish(h, good).await;
}
