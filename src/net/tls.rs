//! TLS configuration: the server side for TLS role ports, and the accept-any-certificate client
//! side used towards neighbour servers and by test clients (spec §2.2: no PKI, identities are
//! proved by Ed25519 challenges).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use crate::store::keys::TlsMaterial;

/// The ring provider with ChaCha20-Poly1305 suites first: Raspberry Pi cores lack AES
/// instructions, so ChaCha20 is several times faster there.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    let mut provider = ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        let name = format!("{:?}", suite.suite());
        u8::from(!name.contains("CHACHA20"))
    });
    Arc::new(provider)
}

/// Server configuration for TLS 1.2 and 1.3 with the server's self-signed certificate.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, rustls::Error> {
    let cert = CertificateDer::from(material.cert_der.clone());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(material.key_der.clone()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    // Our suite order wins, so clients that prefer AES still get ChaCha20 (see `provider`).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Client configuration that accepts any server certificate.
pub fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Server name sent in the client hello; the server ignores it.
pub fn any_server_name() -> ServerName<'static> {
    ServerName::try_from("iop-profile-server").unwrap_or(ServerName::IpAddress(
        std::net::IpAddr::from([127, 0, 0, 1]).into(),
    ))
}

/// Certificate verifier that trusts every certificate but still checks handshake signatures, so
/// the session keys belong to whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_suites_come_first_for_both_versions() {
        let names: Vec<String> = provider()
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        let first_other = names
            .iter()
            .position(|n| !n.contains("CHACHA20"))
            .unwrap_or(names.len());
        assert!(
            names[..first_other].iter().any(|n| n.starts_with("TLS13_")),
            "{names:?}"
        );
        assert!(
            names[..first_other]
                .iter()
                .any(|n| n.starts_with("TLS_ECDHE")),
            "{names:?}"
        );
        assert!(
            names[first_other..].iter().all(|n| !n.contains("CHACHA20")),
            "{names:?}"
        );
    }
}
