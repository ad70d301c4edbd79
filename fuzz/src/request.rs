//! A fuzzed request head: method, target (raw bytes or host, path and query built from the
//! vocabularies), repeated headers and the client address, turned into `http::request::Parts`
//! the way hyper hands them to the proxy. Pieces `http` refuses (an invalid header name, a
//! target that is no URI) are dropped or replaced by `/`, so every input yields a request.

use std::net::IpAddr;

use arbitrary::Arbitrary;
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Uri, Version};

use crate::words;

/// One request head and the address it came from.
#[derive(Debug, Arbitrary)]
pub struct FuzzRequest {
    #[arbitrary(with = words::method)]
    method: String,
    target: Target,
    headers: Vec<FuzzHeader>,
    client: Client,
    /// HTTP/2 (the authority is then `:authority`) rather than HTTP/1.1.
    h2: bool,
}

/// The request target.
#[derive(Debug, Arbitrary)]
enum Target {
    /// Whatever bytes; `/` when they are no URI.
    Raw(Vec<u8>),
    /// Origin form (`/path?query`) or, with an authority, absolute form.
    Built {
        #[arbitrary(with = authority)]
        authority: Option<String>,
        #[arbitrary(with = words::path)]
        path: String,
        query: Option<Vec<Param>>,
    },
}

/// A query parameter: `name=value`, or `name` alone.
#[derive(Debug, Arbitrary)]
struct Param {
    #[arbitrary(with = words::name)]
    name: String,
    #[arbitrary(with = optional_value)]
    value: Option<String>,
}

/// One header line; repeated names are kept (appended).
#[derive(Debug, Arbitrary)]
struct FuzzHeader {
    #[arbitrary(with = words::header_name)]
    name: String,
    #[arbitrary(with = words::value)]
    value: String,
}

/// The client address.
#[derive(Debug, Arbitrary)]
enum Client {
    V4([u8; 4]),
    V6([u8; 16]),
}

fn authority(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Option<String>> {
    if u.arbitrary()? {
        words::host(u).map(Some)
    } else {
        Ok(None)
    }
}

fn optional_value(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Option<String>> {
    if u.arbitrary()? {
        words::value(u).map(Some)
    } else {
        Ok(None)
    }
}

impl FuzzRequest {
    /// The request head, as hyper would parse it (whatever `http` accepts).
    pub fn parts(&self) -> Parts {
        let mut builder = http::Request::builder()
            .method(Method::from_bytes(self.method.as_bytes()).unwrap_or(Method::GET))
            .uri(self.target.uri())
            .version(if self.h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            });
        if let Some(headers) = builder.headers_mut() {
            for h in &self.headers {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(h.name.as_bytes()),
                    HeaderValue::from_bytes(h.value.as_bytes()),
                ) else {
                    continue;
                };
                headers.append(name, value);
            }
        }
        match builder.body(()) {
            Ok(req) => req.into_parts().0,
            // Every piece was validated above; keep the target total anyway.
            Err(_) => http::Request::new(()).into_parts().0,
        }
    }

    /// The client address.
    pub fn client(&self) -> IpAddr {
        match self.client {
            Client::V4(o) => IpAddr::from(o),
            Client::V6(o) => IpAddr::from(o),
        }
    }
}

impl Target {
    fn uri(&self) -> Uri {
        let uri = match self {
            Self::Raw(bytes) => Uri::try_from(bytes.as_slice()),
            Self::Built {
                authority,
                path,
                query,
            } => {
                let mut text = String::new();
                if let Some(a) = authority {
                    text.push_str("http://");
                    text.push_str(a);
                }
                text.push_str(path);
                if let Some(params) = query {
                    text.push('?');
                    for (i, p) in params.iter().enumerate() {
                        if i > 0 {
                            text.push('&');
                        }
                        text.push_str(&p.name);
                        if let Some(v) = &p.value {
                            text.push('=');
                            text.push_str(v);
                        }
                    }
                }
                Uri::try_from(text)
            }
        };
        uri.unwrap_or_else(|_| Uri::from_static("/"))
    }
}
