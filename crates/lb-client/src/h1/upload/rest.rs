//! The rest of an upload, written beside the answer ([`Rest`], [`Uploading`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Body;

use super::{Upload, UploadError};
use crate::error::BoxError;
use crate::stream::Stream;

/// The rest of a request body still being written when the answer's head came: the
/// answer's body ([`OwnBody`](crate::h1::OwnBody)) drives it on the same connection while it
/// is read, so a backend that answers as it reads (a full-duplex stream) gets all of it.
pub(crate) trait Rest: std::marker::Send {
    /// Writes what is ready of the rest; ready once all of it is written and flushed.
    fn poll_rest(
        &mut self,
        stream: &mut Stream,
        out: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>>;
}

/// An [`Upload`] under way with its body.
pub(crate) struct Uploading<B> {
    pub(crate) upload: Upload,
    pub(crate) body: B,
}

impl<B> Rest for Uploading<B>
where
    B: Body + Unpin + std::marker::Send,
    B::Error: Into<BoxError>,
{
    fn poll_rest(
        &mut self,
        stream: &mut Stream,
        out: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        self.upload
            .poll_send(stream, out, Pin::new(&mut self.body), cx)
    }
}
