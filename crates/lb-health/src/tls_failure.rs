//! The kind of a TLS failure, as far as a health check cares: wrong name, untrusted
//! issuer, expired, rejected...
//!
//! Plain data, compiled in every feature combination, so that [`CheckFailure::Tls`]
//! (and the hooks, logs and status pages matching on it) keeps one shape whether or not
//! this build has TLS checks (feature `tls`, which also adds `TlsFailureKind::classify`,
//! the mapping from a rustls error).
//!
//! [`CheckFailure::Tls`]: crate::CheckFailure::Tls

use std::fmt;

/// What went wrong in a TLS handshake, as far as a health check cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailureKind {
    /// The certificate is not valid for the server name (or IP) checked.
    WrongName,
    /// The chain does not lead to a trusted root (unknown or untrusted issuer).
    UntrustedIssuer,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate is unacceptable for another reason (bad encoding or signature,
    /// revoked, wrong purpose...).
    BadCertificate,
    /// The server refused the session with an alert, for example because it requires a
    /// client certificate we did not give, did not accept ours, or shares no protocol.
    Rejected,
    /// Any other handshake failure: protocol error, connection closed mid-handshake.
    Handshake,
}

impl TlsFailureKind {
    /// A short lowercase label for logs and metrics (`wrong_name`, `expired`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongName => "wrong_name",
            Self::UntrustedIssuer => "untrusted_issuer",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadCertificate => "bad_certificate",
            Self::Rejected => "rejected",
            Self::Handshake => "handshake",
        }
    }
}

impl fmt::Display for TlsFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongName => "certificate not valid for the name",
            Self::UntrustedIssuer => "certificate issuer not trusted",
            Self::Expired => "certificate expired",
            Self::NotYetValid => "certificate not valid yet",
            Self::BadCertificate => "bad certificate",
            Self::Rejected => "rejected by the server",
            Self::Handshake => "handshake failed",
        })
    }
}
