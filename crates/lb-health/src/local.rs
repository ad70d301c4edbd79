//! Failures that belong to the checking process, not to the backend: the process ran out of
//! file descriptors, socket buffers or memory while opening a connection.
//!
//! Counting such a failure against a backend marks healthy backends down (and ejects
//! them) exactly when the proxy itself is short of descriptors, and turns a local,
//! transient shortage into `503`s that outlast it by `rise` checks or an ejection time,
//! with a false alarm for every backend. [`HealthMonitor`](crate::HealthMonitor) does not
//! count such a check result, and `lb-proxy` does not report such an attempt to passive
//! health.

use std::error::Error as StdError;
use std::io;

use nix::errno::Errno;

/// The `errno` values that mean this process, not the peer, lacked a resource.
const LOCAL_SHORTAGE: [Errno; 4] = [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM];

/// True when `error`, or an error in its source chain, is an I/O error saying that this
/// process could not get a resource: out of file descriptors (`EMFILE`, or `ENFILE` for the
/// whole system), socket buffers (`ENOBUFS`) or memory (`ENOMEM`). Such a failure says
/// nothing about the backend the connection was meant for.
pub fn is_local_resource_exhaustion(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let code = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error);
        if code.is_some_and(|code| LOCAL_SHORTAGE.iter().any(|l| *l as i32 == code)) {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] io::Error);

    #[test]
    fn descriptor_exhaustion_is_local_anywhere_in_the_chain() {
        let emfile = io::Error::from_raw_os_error(Errno::EMFILE as i32);
        assert!(is_local_resource_exhaustion(&emfile));
        assert!(is_local_resource_exhaustion(&Wrapped(emfile)));
        let enfile = io::Error::from_raw_os_error(Errno::ENFILE as i32);
        assert!(is_local_resource_exhaustion(&Wrapped(enfile)));
    }

    #[test]
    fn the_backends_own_failures_are_not_local() {
        for errno in [Errno::ECONNREFUSED, Errno::ECONNRESET, Errno::EHOSTUNREACH] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert!(!is_local_resource_exhaustion(&Wrapped(e)), "{errno}");
        }
        assert!(!is_local_resource_exhaustion(&io::Error::other(
            "no os error"
        )));
    }
}
