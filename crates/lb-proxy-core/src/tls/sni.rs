//! Choosing a listener's certificate from the client's SNI: exact names, then wildcards
//! (one label), then the default certificate.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::ServerNamePattern;

/// The certificates of one listener by server name. Built once; a handshake costs at most
/// two hash lookups and no allocation (rustls hands out the SNI in lower case already).
#[derive(Debug, Default)]
pub(crate) struct SniResolver {
    /// `a.example.com` → certificate.
    exact: HashMap<Box<str>, Entry>,
    /// `example.com` for `*.example.com` → certificate.
    wildcard: HashMap<Box<str>, Entry>,
    /// Served without SNI, or for a name no certificate has.
    default: Option<Arc<CertifiedKey>>,
}

#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    /// The index in `certificates`, for error messages.
    index: usize,
}

impl SniResolver {
    /// Adds `name` for certificate `index` unless a certificate already has it; returns the
    /// index of that earlier certificate when one does.
    pub(crate) fn insert(
        &mut self,
        name: &ServerNamePattern,
        key: &Arc<CertifiedKey>,
        index: usize,
    ) -> Result<(), usize> {
        let (map, name) = match name.wildcard_parent() {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, name.as_str()),
        };
        match map.get(name) {
            Some(earlier) => Err(earlier.index),
            None => {
                map.insert(
                    name.into(),
                    Entry {
                        key: key.clone(),
                        index,
                    },
                );
                Ok(())
            }
        }
    }

    /// Serves `key` when nothing else matches.
    pub(crate) fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    /// The certificate for `server_name` (lower case, as rustls gives it).
    fn lookup(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.as_ref();
        };
        if let Some(entry) = self.exact.get(name) {
            return Some(&entry.key);
        }
        let wildcard = name
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent));
        if let Some(entry) = wildcard {
            return Some(&entry.key);
        }
        if self.default.is_none() {
            tracing::debug!(
                server_name = name,
                "no certificate for this name and no default"
            );
        }
        self.default.as_ref()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(client_hello.server_name()).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rustls::crypto::ring::sign::any_supported_type;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    fn key() -> Arc<CertifiedKey> {
        let generated = rcgen::generate_simple_self_signed(["x.test".to_owned()]).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let signer = any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signer,
        ))
    }

    fn name(text: &str) -> ServerNamePattern {
        ServerNamePattern::parse(text).unwrap()
    }

    #[test]
    fn exact_names_then_wildcards_then_the_default() {
        let (a, b, wild, default) = (key(), key(), key(), key());
        let mut r = SniResolver::default();
        r.insert(&name("a.example.com"), &a, 0).unwrap();
        r.insert(&name("B.example.com."), &b, 1).unwrap();
        r.insert(&name("*.example.com"), &wild, 2).unwrap();
        let pick = |r: &SniResolver, sni| r.lookup(sni).cloned();
        assert!(Arc::ptr_eq(&pick(&r, Some("a.example.com")).unwrap(), &a));
        assert!(Arc::ptr_eq(&pick(&r, Some("b.example.com")).unwrap(), &b));
        assert!(Arc::ptr_eq(
            &pick(&r, Some("c.example.com")).unwrap(),
            &wild
        ));
        // A wildcard covers exactly one label.
        assert!(pick(&r, Some("example.com")).is_none());
        assert!(pick(&r, Some("x.c.example.com")).is_none());
        assert!(pick(&r, None).is_none());
        r.set_default(default.clone());
        assert!(Arc::ptr_eq(
            &pick(&r, Some("example.com")).unwrap(),
            &default
        ));
        assert!(Arc::ptr_eq(&pick(&r, None).unwrap(), &default));
    }

    #[test]
    fn a_name_belongs_to_the_first_certificate_that_claims_it() {
        let mut r = SniResolver::default();
        r.insert(&name("a.example.com"), &key(), 0).unwrap();
        assert_eq!(r.insert(&name("A.example.com"), &key(), 3), Err(0));
        r.insert(&name("*.a.example.com"), &key(), 1).unwrap();
        assert_eq!(r.insert(&name("*.a.example.com"), &key(), 2), Err(1));
    }
}
