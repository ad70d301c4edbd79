//! The hand-over between two ends in this process: sockets cross and keep their queue,
//! and every way the new side can fail leaves the running side with an error that says
//! which, never a commit.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::path::Path;
use std::time::Instant;

use super::*;

fn dup(l: &TcpListener) -> OwnedFd {
    l.as_fd().try_clone_to_owned().unwrap()
}

fn offer(l: &TcpListener, kind: ListenerKind) -> (ListenerKind, SocketAddr, OwnedFd) {
    (kind, l.local_addr().unwrap(), dup(l))
}

const QUICK: SendTimeouts = SendTimeouts {
    connect: Duration::from_secs(10),
    start: Duration::from_secs(10),
};

/// The new side in a thread: `receive`, then `then` with the hand-over.
fn new_side<T: Send + 'static>(
    path: &Path,
    then: impl FnOnce(Handover) -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, HandoverError>> {
    let path = path.to_owned();
    std::thread::spawn(move || receive(&path, Duration::from_secs(10)).map(then))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[tokio::test]
async fn sockets_cross_with_their_kinds_keep_their_queue_and_change_hands_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.sock");
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a_addr, admin_addr) = (a.local_addr().unwrap(), admin.local_addr().unwrap());
    // A client queued on `a` before the hand-over is accepted by the receiver.
    let _client = std::net::TcpStream::connect(a_addr).unwrap();
    let receiver = new_side(&path, |mut handover| {
        let inherited = handover.take_sockets();
        let confirmed = block_on(handover.confirm(Duration::from_secs(10)));
        (inherited, confirmed)
    });
    send(
        &path,
        vec![
            offer(&a, ListenerKind::Http),
            offer(&admin, ListenerKind::Admin),
        ],
        QUICK,
    )
    .await
    .unwrap();
    let (mut inherited, confirmed) = receiver.join().unwrap().unwrap();
    confirmed.unwrap();
    assert_eq!(inherited.len(), 2);
    drop((a, admin)); // The old process's copies close; the sockets stay open.
    let (kind, a2) = inherited.take(a_addr).unwrap();
    assert_eq!(kind, ListenerKind::Http);
    assert_eq!(inherited.take(admin_addr).unwrap().0, ListenerKind::Admin);
    assert!(inherited.is_empty());
    a2.accept().unwrap();
    assert!(std::net::TcpStream::connect(a_addr).is_ok());
    assert!(!path.exists(), "the receiver removes the socket file");
}

#[tokio::test]
async fn a_new_process_that_fails_to_start_says_why_and_nothing_changes_hands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.sock");
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = new_side(&path, |handover| {
        block_on(handover.abort("cannot listen on 127.0.0.1:9901: Address already in use"));
    });
    let err = send(&path, vec![offer(&a, ListenerKind::Http)], QUICK)
        .await
        .unwrap_err();
    receiver.join().unwrap().unwrap();
    assert!(
        matches!(&err, HandoverError::Failed { reason } if reason.contains("Address already in use")),
        "{err}"
    );
}

#[tokio::test]
async fn a_new_process_that_dies_or_hangs_before_ready_leaves_the_running_one_in_charge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.sock");
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    // Dies: the socket closes after `held`.
    let receiver = new_side(&path, drop);
    let err = send(&path, vec![offer(&a, ListenerKind::Http)], QUICK)
        .await
        .unwrap_err();
    receiver.join().unwrap().unwrap();
    assert!(
        matches!(
            err,
            HandoverError::Closed {
                waiting_for: "ready",
                ..
            }
        ),
        "{err}"
    );

    // Hangs: holds the sockets and never answers.
    let (park, parked) = std::sync::mpsc::channel::<()>();
    let receiver = new_side(&path, move |handover| {
        let _ = parked.recv();
        drop(handover);
    });
    let timeouts = SendTimeouts {
        start: Duration::from_millis(300),
        ..QUICK
    };
    let err = send(&path, vec![offer(&a, ListenerKind::Http)], timeouts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HandoverError::Timeout {
                waiting_for: "ready",
                ..
            }
        ),
        "{err}"
    );
    drop(park);
    receiver.join().unwrap().unwrap();
}

#[tokio::test]
async fn a_new_process_whose_commit_never_comes_is_told_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.sock");
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = new_side(&path, |handover| {
        block_on(handover.confirm(Duration::from_secs(10)))
    });
    // A running side that takes the sockets' `held`, then gives up before `ready`.
    let timeouts = SendTimeouts {
        start: Duration::from_millis(1),
        ..QUICK
    };
    let sent = send(&path, vec![offer(&a, ListenerKind::Http)], timeouts).await;
    let confirmed = receiver.join().unwrap().unwrap();
    match sent {
        // It gave up first: the new side's `ready` met a closed socket.
        Err(HandoverError::Timeout { .. }) => assert!(
            matches!(
                confirmed,
                Err(HandoverError::Closed {
                    waiting_for: "commit",
                    ..
                } | HandoverError::Socket { .. })
            ),
            "{confirmed:?}"
        ),
        // `ready` came within the millisecond: then it committed.
        other => {
            other.unwrap();
            confirmed.unwrap();
        }
    }
}

#[tokio::test]
async fn send_times_out_without_a_receiver_and_refuses_nothing_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let timeouts = SendTimeouts {
        connect: Duration::from_millis(300),
        ..QUICK
    };
    let err = send(&path, vec![offer(&a, ListenerKind::Http)], timeouts)
        .await
        .unwrap_err();
    assert!(matches!(err, HandoverError::Socket { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = send(&path, vec![], timeouts).await.unwrap_err();
    assert!(err.to_string().contains("0 listening sockets"), "{err}");
}

#[test]
fn receive_times_out_when_nobody_sends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wait.sock");
    let err = receive(&path, Duration::from_millis(200)).unwrap_err();
    assert!(
        matches!(
            err,
            HandoverError::Timeout {
                waiting_for: "connection",
                ..
            }
        ),
        "{err}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn a_non_listening_descriptor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sock");
    let receiver = new_side(&path, drop);
    let file = std::fs::File::open("/dev/null").unwrap();
    let fd = file.as_fd().try_clone_to_owned().unwrap();
    let addr = "127.0.0.1:1".parse().unwrap();
    let err = send(&path, vec![(ListenerKind::Http, addr, fd)], QUICK)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HandoverError::Closed {
                waiting_for: "held",
                ..
            }
        ),
        "{err}"
    );
    let err = receiver.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
}

#[tokio::test]
async fn a_socket_that_is_not_what_its_manifest_line_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lying.sock");
    let receiver = new_side(&path, drop);
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere = "127.0.0.1:1".parse().unwrap();
    let _ = send(&path, vec![(ListenerKind::Tls, elsewhere, dup(&a))], QUICK).await;
    let err = receiver.join().unwrap().unwrap_err();
    assert!(
        err.to_string()
            .contains("offered as tls 127.0.0.1:1 is bound to"),
        "{err}"
    );
}

/// An lb-proxy from before the version 2 hand-over sends a bare count and waits for `ok`:
/// it is refused by name, and gets no acknowledgement (it then times out and serves on).
#[tokio::test]
async fn a_first_protocol_offer_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sock");
    let receiver = new_side(&path, drop);
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut old = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let fd = a.as_fd().try_clone_to_owned().unwrap();
    fds::send(&mut old, &1_u32.to_le_bytes(), &[fd.as_raw_fd()]).unwrap();
    let err = receiver.join().unwrap().unwrap_err();
    assert!(
        err.to_string().contains("first hand-over protocol"),
        "{err}"
    );
    let mut ack = Vec::new();
    old.read_to_end(&mut ack).unwrap();
    assert!(ack.is_empty(), "no `ok` for it: {ack:?}");
    old.flush().unwrap();
}
