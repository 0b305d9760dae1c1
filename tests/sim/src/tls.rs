//! The API server's side of TLS, as k3s serves it: the cluster's serving certificate (`pki`), and
//! a client certificate asked for but not required during the handshake (kube-apiserver's
//! `tls.RequestClientCert`), checked against the client CA only afterwards by the authenticator.
//! A connection without a valid client certificate is anonymous, and `api` answers anonymous
//! requests 401, as k3s does with anonymous auth off — the handshake itself never fails over a
//! missing or foreign client certificate.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::pki::Pki;

/// What the API server needs to accept TLS connections and tell who is calling.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    authenticator: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// The one crypto provider of the sim (ring), named rather than taken from the process default,
/// so nothing depends on which provider another crate installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))
}

pub fn key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("bad key PEM: {e}"))
}

/// Trust anchors from PEM certificates.
pub fn roots(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(pem)? {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    Ok(roots)
}

impl ServerTls {
    pub fn new(pki: &Pki) -> Result<Self, String> {
        let provider = provider();
        let client_roots = Arc::new(roots(&pki.client_ca)?);
        let authenticator =
            WebPkiClientVerifier::builder_with_provider(client_roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("bad client CA: {e}"))?;
        let request = Arc::new(RequestClientCert {
            hints: client_roots.subjects(),
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(request)
            .with_single_cert(certs(&pki.serving_cert)?, key(&pki.serving_key)?)
            .map_err(|e| format!("bad serving certificate: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            authenticator,
        })
    }

    /// Did the peer present a client certificate the client CA signed (for client auth, and
    /// valid now)? It proved it holds the key during the handshake.
    pub fn authenticated(&self, conn: &ServerConnection) -> bool {
        let Some((leaf, chain)) = conn.peer_certificates().and_then(|c| c.split_first()) else {
            return false;
        };
        self.authenticator
            .verify_client_cert(leaf, chain, UnixTime::now())
            .is_ok()
    }
}

/// Ask for a client certificate, accept any (or none) in the handshake, but check that the
/// client holds its key.
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
