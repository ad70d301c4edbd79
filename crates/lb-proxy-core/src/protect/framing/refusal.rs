//! [`Refusal`]: why the framing check refused a head, and the answer's status and text.

use std::fmt;

use crate::protect::Rejection;

/// Why a head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked = 1,
    /// More than one `Content-Length` line.
    DuplicateLength,
    /// A `Content-Length` that is not one decimal number.
    InvalidLength,
    /// A `Transfer-Encoding` other than one line saying `chunked`, or on HTTP/1.0.
    InvalidTransferEncoding,
    /// A line of the head ends with LF alone.
    BareLf,
    /// A header line starts with a space or a tab.
    ObsFold,
    /// The request line is longer than `max_uri_length` allows (414).
    RequestLineTooLong,
    /// The head is larger than `max_header_size` (431).
    HeadTooLarge,
}

impl Refusal {
    /// The status of the answer.
    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            Self::RequestLineTooLong => http::StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The body of the answer.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::LengthAndChunked => {
                "400 Bad Request: both Content-Length and Transfer-Encoding\n"
            }
            Self::DuplicateLength => "400 Bad Request: more than one Content-Length\n",
            Self::InvalidLength => "400 Bad Request: invalid Content-Length\n",
            Self::InvalidTransferEncoding => {
                "400 Bad Request: Transfer-Encoding must be exactly \"chunked\" (HTTP/1.1)\n"
            }
            Self::BareLf => "400 Bad Request: a line of the head ends without CR\n",
            Self::ObsFold => "400 Bad Request: obs-fold (a header line starting with whitespace)\n",
            Self::RequestLineTooLong => "414 URI Too Long\n",
            Self::HeadTooLarge => "431 Request Header Fields Too Large\n",
        }
    }

    /// The answer: its status and text (the connection closes after it).
    pub(crate) fn rejection(self) -> Rejection {
        Rejection::new(self.status(), self.text())
    }

    /// The refusal stored as `code` by [`code`](Self::code).
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        [
            Self::LengthAndChunked,
            Self::DuplicateLength,
            Self::InvalidLength,
            Self::InvalidTransferEncoding,
            Self::BareLf,
            Self::ObsFold,
            Self::RequestLineTooLong,
            Self::HeadTooLarge,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    /// A non-zero byte naming the refusal (stored in an atomic beside the request ordinal).
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().trim_end())
    }
}
