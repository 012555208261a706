//! TLS on both sides (rustls with the ring provider): the hub's identity,
//! the roots a node trusts, and certificate pinning for self-signed hubs.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS setting could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// No certificate in the PEM text.
    #[error(
        "no certificate found in the {what} PEM; give the PEM text of the certificate (-----BEGIN CERTIFICATE-----)"
    )]
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// The private key could not be read.
    #[error(
        "the private key PEM could not be read ({0}); give a PKCS#8, PKCS#1 or SEC1 key in PEM form"
    )]
    BadKey(String),
    /// A certificate could not be read or used.
    #[error("the {what} certificate could not be used: {detail}")]
    BadCertificate {
        /// Which input.
        what: &'static str,
        /// rustls' detail.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("the TLS configuration was refused: {0}")]
    Config(String),
    /// A fingerprint is not 64 hex digits.
    #[error(
        "the certificate fingerprint {0:?} is not a SHA-256 in hex (64 hex digits, colons allowed)"
    )]
    BadFingerprint(String),
    /// Generating a certificate failed.
    #[error("could not generate a self-signed certificate: {0}")]
    Generate(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The hub's certificate chain and private key.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .field("fingerprint", &self.chain.first().map(|c| fingerprint(c)))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsIdentity {
    /// From PEM text: the certificate chain (leaf first) and its key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates_from_pem(chain_pem, "hub")?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey(e.to_string()))?;
        Ok(TlsIdentity { chain, key })
    }

    /// From DER: the certificate chain (leaf first) and its PKCS#8 key.
    pub fn from_der(chain: Vec<Vec<u8>>, pkcs8_key: Vec<u8>) -> Self {
        TlsIdentity {
            chain: chain.into_iter().map(CertificateDer::from).collect(),
            key: PrivateKeyDer::Pkcs8(pkcs8_key.into()),
        }
    }

    /// The SHA-256 fingerprint of the leaf certificate, for a node to pin.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|c| fingerprint(c))
            .unwrap_or_default()
    }

    /// The rustls server configuration: TLS 1.2 and 1.3, HTTP/1.1 by ALPN,
    /// no client certificates (nodes authenticate with tokens).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A certificate made on the spot for a self-hosted hub, with the PEM
/// text and fingerprint a node needs to trust it.
#[cfg(feature = "self-signed")]
pub struct SelfSigned {
    /// The identity for the server.
    pub identity: TlsIdentity,
    /// The certificate in PEM, to give nodes as a CA root.
    pub certificate_pem: String,
    /// The key in PEM, to keep beside the certificate.
    pub key_pem: String,
    /// The SHA-256 fingerprint, to give nodes to pin.
    pub fingerprint: String,
}

#[cfg(feature = "self-signed")]
impl SelfSigned {
    /// A self-signed certificate for `names` (DNS names or IP addresses,
    /// e.g. `["localhost", "127.0.0.1"]`).
    pub fn generate(names: &[&str]) -> Result<Self, TlsError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let der = certified.cert.der().to_vec();
        let key = certified.key_pair.serialize_der();
        Ok(SelfSigned {
            certificate_pem: certified.cert.pem(),
            key_pem: certified.key_pair.serialize_pem(),
            fingerprint: fingerprint(&der),
            identity: TlsIdentity::from_der(vec![der], key),
        })
    }
}

/// The SHA-256 fingerprint of a DER certificate, in lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn certificates_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            what,
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(chain)
}

/// What a node trusts as its hub's certificate.
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// The public web PKI roots (default): for a hub with a certificate
    /// from a public CA.
    #[default]
    WebPki,
    /// These roots only (DER certificates): for a self-hosted hub with its
    /// own CA.
    Roots(Vec<Vec<u8>>),
    /// Exactly the certificate with this SHA-256 fingerprint, whatever its
    /// names and issuer: for a hub with a self-signed certificate.
    Pinned(String),
}

impl Trust {
    /// Roots from PEM text (one or more certificates).
    pub fn roots_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let roots = certificates_from_pem(pem, "CA root")?;
        Ok(Trust::Roots(
            roots.into_iter().map(|c| c.to_vec()).collect(),
        ))
    }

    /// A pinned fingerprint (hex, colons and case ignored).
    pub fn pinned(fingerprint: &str) -> Result<Self, TlsError> {
        let clean: String = fingerprint
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if clean.len() != 64 || !clean.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TlsError::BadFingerprint(fingerprint.to_owned()));
        }
        Ok(Trust::Pinned(clean))
    }

    /// The rustls client configuration for this trust.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = match self {
            Trust::WebPki => builder
                .with_root_certificates(RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
                .with_no_client_auth(),
            Trust::Roots(roots) => {
                let mut store = RootCertStore::empty();
                for der in roots {
                    store.add(CertificateDer::from(der.clone())).map_err(|e| {
                        TlsError::BadCertificate {
                            what: "CA root",
                            detail: e.to_string(),
                        }
                    })?;
                }
                builder.with_root_certificates(store).with_no_client_auth()
            }
            Trust::Pinned(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin: pin.clone(),
                    provider,
                }))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts exactly one certificate, by fingerprint; handshake signatures
/// are still verified against it.
#[derive(Debug)]
struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // A fingerprint is public: a plain comparison leaks nothing.
        if fingerprint(end_entity) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
