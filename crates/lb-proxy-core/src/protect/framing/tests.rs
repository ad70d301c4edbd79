//! The framing scanner on whole inputs and on inputs cut into pieces.

use super::*;

fn framer() -> Framer {
    Framer::new(FramingLimits {
        max_head: 256,
        max_request_line: 64,
        header_timeout: Duration::from_secs(1),
    })
}

/// Scans `input` in one piece.
fn scan(input: &[u8]) -> Step {
    framer().scan(input)
}

/// Scans `input` cut into pieces of `size` bytes as [`FramedIo`] would feed them: a
/// partial head is fed again from its first byte. Returns the steps that were not
/// `Pass`, and the framed heads.
fn scan_in_pieces(input: &[u8], size: usize) -> (Option<Refusal>, u64) {
    let mut f = framer();
    let mut partial: Vec<u8> = Vec::new();
    for piece in input.chunks(size) {
        partial.extend_from_slice(piece);
        match f.scan(&partial) {
            Step::Pass => partial.clear(),
            Step::Partial(n) => {
                partial.drain(..n);
            }
            Step::Refuse(_, why) => return (Some(why), f.heads()),
        }
    }
    (None, f.heads())
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn ordinary_requests_pass_whole_or_byte_by_byte() {
    let mut many = Vec::new();
    many.extend_from_slice(GET);
    many.extend_from_slice(b"\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    many.extend_from_slice(
        b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    many.extend_from_slice(GET);
    assert_eq!(scan(&many), Step::Pass);
    for size in [1, 2, 3, 7, 64] {
        assert_eq!(scan_in_pieces(&many, size), (None, 4), "pieces of {size}");
    }
}

#[test]
fn an_incomplete_head_is_partial_from_its_first_byte() {
    let mut input = Vec::from(GET);
    input.extend_from_slice(b"GET /next HTTP/1.1\r\nHo");
    assert_eq!(scan(&input), Step::Partial(GET.len()));
    let mut f = framer();
    assert_eq!(
        f.scan(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
        Step::Pass
    );
    assert_eq!(f.scan(b"cGET"), Step::Partial(1));
}

#[test]
fn ambiguous_framing_is_refused_where_the_head_starts() {
    let cases: &[(&[u8], Refusal)] = &[
        (
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::LengthAndChunked,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            Refusal::LengthAndChunked,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Refusal::DuplicateLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            Refusal::InvalidLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            Refusal::InvalidLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            Refusal::InvalidLength,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            Refusal::InvalidTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::InvalidTransferEncoding,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::InvalidTransferEncoding,
        ),
        (b"GET / HTTP/1.1\nHost: a\n\n", Refusal::BareLf),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Refusal::BareLf),
        (b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", Refusal::ObsFold),
    ];
    for (head, why) in cases {
        let mut input = Vec::from(GET);
        input.extend_from_slice(head);
        assert_eq!(scan(&input), Step::Refuse(GET.len(), *why), "{head:?}");
        assert_eq!(scan_in_pieces(&input, 3), (Some(*why), 1), "{head:?}");
    }
}

#[test]
fn sizes_give_414_for_the_request_line_and_431_for_the_head() {
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70));
    assert_eq!(
        scan(long_line.as_bytes()),
        Step::Refuse(0, Refusal::RequestLineTooLong)
    );
    // Refused before the line ends: a client cannot make the proxy hold a long line.
    let unfinished = format!("GET /{}", "a".repeat(70));
    assert_eq!(
        scan(unfinished.as_bytes()),
        Step::Refuse(0, Refusal::RequestLineTooLong)
    );
    let big_head = format!("GET / HTTP/1.1\r\nX-A: {}\r\n\r\n", "a".repeat(250));
    assert_eq!(
        scan(big_head.as_bytes()),
        Step::Refuse(0, Refusal::HeadTooLarge)
    );
    let unfinished = format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(250));
    assert_eq!(
        scan(unfinished.as_bytes()),
        Step::Refuse(0, Refusal::HeadTooLarge)
    );
    assert_eq!(
        scan_in_pieces(big_head.as_bytes(), 5).0,
        Some(Refusal::HeadTooLarge)
    );
}

#[test]
fn a_body_is_skipped_even_when_it_looks_like_a_bad_head() {
    let input = b"POST / HTTP/1.1\r\nContent-Length: 28\r\n\r\nGET / HTTP/1.1\nX: \n\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(scan(input), Step::Pass);
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        a\r\nGET /\n\n\n\n\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let mut f = framer();
    assert_eq!(f.scan(chunked), Step::Pass);
    assert!(!f.is_off());
    assert_eq!(f.heads(), 2);
    assert_eq!(scan_in_pieces(chunked, 1), (None, 2));
}

#[test]
fn broken_chunk_framing_turns_the_check_off() {
    for body in [
        &b"zz\r\n"[..],
        b"5\nhello\n",
        b"\r\n",
        b"10000000000000005\r\n",
        b"5\r\nhelloX",
    ] {
        let mut f = framer();
        let mut input = Vec::from(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET / HTTP/1.1\nbare LF, not checked\n\n");
        assert_eq!(f.scan(&input), Step::Pass, "{body:?}");
        assert!(f.is_off(), "{body:?}");
    }
}

#[test]
fn http2_and_upgrades_turn_the_check_off() {
    let mut f = framer();
    assert_eq!(f.scan(b"PRI * HTTP/2"), Step::Partial(0));
    assert_eq!(f.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"), Step::Pass);
    assert!(f.is_off());
    // A GET that only starts like the preface is an HTTP/1 head.
    assert_eq!(scan(b"P"), Step::Partial(0));
    assert_eq!(
        scan(b"PUT / HTTP/1.1\n\n"),
        Step::Refuse(0, Refusal::BareLf)
    );

    let upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    let mut f = framer();
    assert_eq!(f.scan(upgrade), Step::Pass);
    assert!(f.after_upgrade());
    f.resume(false);
    assert!(f.is_off());
    let mut f = framer();
    assert_eq!(f.scan(upgrade), Step::Pass);
    f.resume(true);
    assert_eq!(
        f.scan(b"GET / HTTP/1.1\n\n"),
        Step::Refuse(0, Refusal::BareLf)
    );
    assert_eq!(f.heads(), 1);
}

#[test]
fn refusals_round_trip_through_their_codes() {
    for code in 0..=255u8 {
        if let Some(r) = Refusal::from_code(code) {
            assert_eq!(r.code(), code);
            assert!(r.text().starts_with(r.status().as_str()));
        }
    }
    assert_eq!(Refusal::from_code(0), None);
    assert_eq!(
        Refusal::from_code(Refusal::HeadTooLarge.code()),
        Some(Refusal::HeadTooLarge)
    );
}
