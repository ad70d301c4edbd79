//! Helpers of the TLS listener tests: a throwaway PKI (rcgen) written to a temporary
//! directory, and real TLS clients (rustls over tokio-rustls) speaking HTTP/1.1 or HTTP/2
//! through hyper.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Every client step is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// A certificate authority that issues leaf certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
}

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (its subject alternative names).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Leaf {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A temporary directory for a test's files, removed when dropped.
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `contents` to `name` in the directory.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `leaf` as `NAME.pem` and `NAME.key`.
    pub fn write_leaf(&self, name: &str, leaf: &Leaf) {
        self.write(&format!("{name}.pem"), &leaf.cert_pem);
        self.write(&format!("{name}.key"), &leaf.key_pem);
    }
}

/// How a test client connects.
#[derive(Clone)]
pub struct ClientOptions<'a> {
    /// Trust this CA; `None` accepts any certificate (to look at what the server sends).
    pub trust: Option<&'a Ca>,
    /// Versions offered; both by default.
    pub versions: &'static [&'static rustls::SupportedProtocolVersion],
    /// ALPN protocols offered.
    pub alpn: &'static [&'static str],
    /// Present this client certificate.
    pub client_cert: Option<&'a Leaf>,
    /// Send SNI (the default).
    pub sni: bool,
}

impl<'a> ClientOptions<'a> {
    /// Trusts `ca`, offers TLS 1.2 and 1.3 and `h2, http/1.1`.
    pub fn trusting(ca: &'a Ca) -> Self {
        Self {
            trust: Some(ca),
            versions: rustls::ALL_VERSIONS,
            alpn: &["h2", "http/1.1"],
            client_cert: None,
            sni: true,
        }
    }

    /// Accepts any certificate; offers TLS 1.2 and 1.3 and `h2, http/1.1`.
    pub fn any_cert() -> Self {
        Self {
            trust: None,
            versions: rustls::ALL_VERSIONS,
            alpn: &["h2", "http/1.1"],
            client_cert: None,
            sni: true,
        }
    }

    fn config(&self) -> Arc<ClientConfig> {
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions)
            .unwrap();
        let builder = match self.trust {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(lb_health::AcceptAnyCertificate::new(
                    provider,
                ))),
        };
        let mut config = match self.client_cert {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![leaf.der.clone()],
                    PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.enable_sni = self.sni;
        Arc::new(config)
    }

    /// Connects to `addr` and completes the handshake for `name`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        name: &str,
    ) -> Result<TlsStream<TcpStream>, String> {
        let connector = TlsConnector::from(self.config());
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(STEP, connector.connect(server_name, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("handshake: {e}")),
            Err(_) => Err("handshake timed out".into()),
        }
    }

    /// Connects, and GETs `/` on that connection (HTTP/2 if ALPN agreed on h2).
    pub async fn get(&self, addr: SocketAddr, name: &str) -> Result<Answer, String> {
        let stream = self.connect(addr, name).await?;
        get(stream, name).await
    }
}

/// What a request through the proxy got.
#[derive(Debug)]
pub struct Answer {
    pub version: Version,
    pub status: StatusCode,
    pub body: String,
}

/// GETs `/` on an established TLS connection: HTTP/2 when ALPN agreed on `h2`, else HTTP/1.1.
pub async fn get(stream: TlsStream<TcpStream>, name: &str) -> Result<Answer, String> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let work = async move {
        let resp = if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let req = Request::get(format!("https://{name}/"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            send.send_request(req).await?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let req = Request::get("/")
                .header("host", name)
                .body(Empty::<Bytes>::new())
                .unwrap();
            send.send_request(req).await?
        };
        let (version, status) = (resp.version(), resp.status());
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>(Answer {
            version,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    match tokio::time::timeout(STEP, work).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("request: {e}")),
        Err(_) => Err("request timed out".into()),
    }
}

/// The leaf certificate the server presented on `stream`.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}
