//! Unit tests of the upload's framing and queueing.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{Empty, Full};

use super::*;

fn send<B: Body>(req: Request<B>) -> Upload {
    Upload::new(&req).unwrap()
}

#[test]
fn the_framing_follows_the_headers_then_the_body() {
    let full = || Full::new(Bytes::from_static(b"abc"));
    let s = send(Request::post("/").body(full()).unwrap());
    assert_eq!(
        (s.declared.framing, s.declared.added),
        (Framing::Length(3), Added::Length(3))
    );
    let s = send(
        Request::post("/")
            .header("content-length", "3")
            .body(full())
            .unwrap(),
    );
    assert_eq!(
        (s.declared.framing, s.declared.added),
        (Framing::Length(3), Added::Nothing)
    );
    let s = send(
        Request::post("/")
            .header("transfer-encoding", "gzip, chunked")
            .header("content-length", "3")
            .body(full())
            .unwrap(),
    );
    assert_eq!(
        (s.declared.framing, s.declared.added),
        (Framing::Chunked, Added::Nothing)
    );
    assert!(s.drops_length());
    let s = send(Request::post("/").body(Empty::<Bytes>::new()).unwrap());
    assert_eq!(
        (s.declared.framing, s.declared.added),
        (Framing::Length(0), Added::Length(0))
    );
    assert!(matches!(s.phase, Phase::Ended));
    let s = send(Request::get("/").body(Empty::<Bytes>::new()).unwrap());
    assert_eq!(
        (s.declared.framing, s.declared.added),
        (Framing::Empty, Added::Nothing)
    );
    let s = send(
        Request::put("/")
            .header("expect", "100-Continue")
            .body(full())
            .unwrap(),
    );
    assert!(matches!(s.phase, Phase::Continue(None)));
}

#[test]
fn bad_declarations_are_refused() {
    for (name, value) in [
        ("transfer-encoding", "gzip"),
        ("content-length", "3, 4"),
        ("content-length", "-3"),
        ("content-length", ""),
    ] {
        let req = Request::post("/")
            .header(name, value)
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert!(Upload::new(&req).is_err(), "{name}: {value}");
    }
    let req = Request::post("/")
        .header("content-length", "3, 3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        Upload::new(&req).unwrap().declared.framing,
        Framing::Length(3)
    );
}

#[test]
fn chunks_are_framed_and_the_last_carries_the_last_chunk() {
    let mut s = send(
        Request::post("/")
            .header("transfer-encoding", "chunked")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    );
    let mut out = b"HEAD".to_vec();
    s.push(&mut out, Bytes::from_static(b"0123456789abcdef!"), false)
        .unwrap();
    assert_eq!(out, b"HEAD11\r\n", "the size line follows the unsent head");
    assert_eq!(s.queue.tail, CHUNK_END);
    s.queue = Queue {
        head: out.len(),
        ..Queue::default()
    };
    s.push(&mut out, Bytes::from_static(b"xy"), true).unwrap();
    assert_eq!(out, b"2\r\n");
    assert_eq!(s.queue.tail, CHUNK_END_LAST);
    assert!(matches!(s.phase, Phase::Ended));
}

#[test]
fn a_length_is_held_to() {
    let mut s = send(
        Request::post("/")
            .header("content-length", "4")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    );
    let mut out = Vec::new();
    assert!(matches!(
        s.push(&mut out, Bytes::from_static(b"12345"), false),
        Err(UploadError::Framing(_))
    ));
    s.push(&mut out, Bytes::from_static(b"12"), false).unwrap();
    assert!(matches!(s.end(&mut out), Err(UploadError::Framing(_))));
    s.push(&mut out, Bytes::from_static(b"34"), false).unwrap();
    assert!(matches!(s.phase, Phase::Ended), "ends with its length");
}
