//! Descriptors across the upgrade socket: `sendmsg`/`recvmsg` with an `SCM_RIGHTS`
//! control message, on a blocking Unix stream.
//!
//! This is the only module of the crate that needs `unsafe`: taking ownership of the file
//! descriptors that arrive in the control message ([`own`]).

use std::io::{self, IoSlice, IoSliceMut, Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::wire::HEADER_LEN;
use super::MAX_LISTENERS;

/// What one [`receive`] read.
pub(super) struct Received {
    /// The fixed part of the offer (4 bytes from a first-protocol sender).
    pub(super) header: Vec<u8>,
    /// The descriptors, owned (closed on drop whatever happens next).
    pub(super) fds: Vec<OwnedFd>,
    /// The control message was cut: more than [`MAX_LISTENERS`] descriptors were sent.
    pub(super) truncated: bool,
}

/// Sends `bytes` with `fds` attached to their first byte.
pub(super) fn send(stream: &mut UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::empty(),
        None,
    )?;
    // A stream socket may take part of the bytes; the descriptors went with the first.
    stream.write_all(&bytes[sent.min(bytes.len())..])
}

/// Reads the fixed part of an offer and the descriptors that came with it.
pub(super) fn receive(stream: &mut UnixStream) -> io::Result<Received> {
    let mut header = [0_u8; HEADER_LEN];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_LISTENERS]);
    let (bytes, truncated, raw) = {
        let mut iov = [IoSliceMut::new(&mut header)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut raw = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC), raw)
    };
    // Own every descriptor at once, so each is closed whatever goes wrong below.
    let fds: Vec<OwnedFd> = raw.into_iter().map(own).collect();
    let mut header = header[..bytes].to_vec();
    // A version 2 header cut short by the stream: read the rest of it. Four bytes that
    // are not the magic are a first-protocol count, which is all such a sender sends.
    if (4..HEADER_LEN).contains(&bytes) && header.starts_with(b"LBHO") {
        let mut rest = vec![0; HEADER_LEN - bytes];
        stream.read_exact(&mut rest)?;
        header.extend_from_slice(&rest);
    }
    Ok(Received {
        header,
        fds,
        truncated,
    })
}

/// Takes ownership of a descriptor received in an `SCM_RIGHTS` message.
#[allow(unsafe_code)] // The one unsafe operation of the crate.
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just created in this process by the kernel for the SCM_RIGHTS
    // message that `receive` read; nothing else refers to it, and `receive` passes each
    // one here exactly once, so the `OwnedFd` is its only owner and closes it once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
