//! Certificates and rustls configuration shared by the TLS transports: QUIC (`quic/`) and
//! TLS over TCP (`tcp/`, when [`crate::tcp::TcpConfig::tls`] is set).
//!
//! Mutual TLS 1.3 with the `ring` provider passed explicitly to every builder (no process-wide
//! provider is installed): the server requires a client certificate chaining to the cluster
//! CA, and the client verifies the server against the same CA and the cluster server name.
//! Certificates come from PEM files, PEM bytes or DER. `dev_ca.rs` makes such a CA for
//! development and tests; `pinned.rs` trusts an exact set of certificates instead.
//!
//! Per-node identity ([`PeerIdentity`]): where a transport binds identities, a peer's
//! certificate must also name what the peer claims to be (the address in its hello, and
//! above the transport the node id in its messages), so a member holding a valid cluster
//! certificate can no longer pose as another member.

mod dev_ca;
mod pinned;

pub use dev_ca::{self_signed_node_identity, DevCertificateAuthority};

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use pinned::PinnedVerifier;

/// The ALPN protocol every slotkv QUIC connection negotiates.
pub const ALPN_PROTOCOL: &[u8] = b"slotkv/1";
/// The ALPN protocol every slotkv TLS-over-TCP connection negotiates (a QUIC peer's
/// configuration is refused by it, and the other way round).
pub const ALPN_PROTOCOL_TCP: &[u8] = b"slotkv-tcp/1";
/// The name every node certificate carries and every client verifies by default.
pub const CLUSTER_SERVER_NAME_DEFAULT: &str = "slotkv-node";

/// Why certificates or TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// The PEM input is malformed.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// The input holds no certificate.
    #[error("no certificate found in the PEM input")]
    NoCertificate,
    /// The input holds no private key.
    #[error("no private key found in the PEM input")]
    NoPrivateKey,
    /// rustls refused the certificates, key or settings.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
    /// Generating a development certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// A node's certificate chain (leaf first) and private key.
pub struct NodeIdentity {
    cert_chain: Vec<CertificateDer<'static>>,
    private_key: PrivateKeyDer<'static>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> NodeIdentity {
        NodeIdentity {
            cert_chain: self.cert_chain.clone(),
            private_key: self.private_key.clone_key(),
        }
    }
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "NodeIdentity({} certificates, <key redacted>)",
            self.cert_chain.len()
        )
    }
}

impl NodeIdentity {
    /// The leaf certificate, to pin on other nodes ([`TrustAnchor::pinned`]).
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.cert_chain.first()
    }

    /// Whether the leaf certificate names `name` (see [`PeerIdentity::names`]).
    pub fn names(&self, name: &str) -> bool {
        self.certificate()
            .is_some_and(|certificate| certificate_names(certificate, name))
    }

    /// An identity from DER certificates (leaf first) and a DER private key.
    pub fn from_der(
        cert_chain: Vec<CertificateDer<'static>>,
        private_key: PrivateKeyDer<'static>,
    ) -> NodeIdentity {
        NodeIdentity {
            cert_chain,
            private_key,
        }
    }

    /// An identity from PEM bytes: a certificate chain and a PKCS#8, PKCS#1 or SEC1 key.
    pub fn from_pem(
        cert_chain_pem: &[u8],
        private_key_pem: &[u8],
    ) -> Result<NodeIdentity, TlsConfigError> {
        let cert_chain = certificates_from_pem(cert_chain_pem)?;
        let private_key = rustls_pemfile::private_key(&mut &private_key_pem[..])
            .map_err(|error| TlsConfigError::Pem(error.to_string()))?
            .ok_or(TlsConfigError::NoPrivateKey)?;
        Ok(NodeIdentity {
            cert_chain,
            private_key,
        })
    }

    /// An identity from PEM files.
    pub fn from_pem_files(
        cert_chain_path: &Path,
        private_key_path: &Path,
    ) -> Result<NodeIdentity, TlsConfigError> {
        NodeIdentity::from_pem(&read(cert_chain_path)?, &read(private_key_path)?)
    }
}

/// The certificate a peer proved it holds on one link, for checking what the peer claims
/// over that link: its address (the hello) and its node id (the cluster's messages). Cheap
/// to clone (one shared certificate).
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    certificate: Arc<CertificateDer<'static>>,
}

impl PeerIdentity {
    /// The identity proved by end-entity certificate `certificate`.
    pub fn new(certificate: CertificateDer<'static>) -> PeerIdentity {
        PeerIdentity {
            certificate: Arc::new(certificate),
        }
    }

    /// Whether the certificate names `name`: a DNS name among its DNS subject alternative
    /// names, or an IP address among its IP ones (the checks of TLS server names).
    pub fn names(&self, name: &str) -> bool {
        certificate_names(&self.certificate, name)
    }
}

/// Whether `certificate` names `name` (see [`PeerIdentity::names`]). `false` for a name that
/// is neither a DNS name nor an IP address, or a certificate that does not parse.
fn certificate_names(certificate: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(certificate) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &server_name).is_ok()
}

/// What a node trusts: a cluster CA, or an exact set of pinned node certificates.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    certificates: Vec<CertificateDer<'static>>,
    pinned: bool,
}

impl TrustAnchor {
    /// Trusts certificates that chain to these DER CA certificates.
    pub fn from_der(roots: Vec<CertificateDer<'static>>) -> TrustAnchor {
        TrustAnchor {
            certificates: roots,
            pinned: false,
        }
    }

    /// Trusts certificates that chain to the CA certificates in PEM bytes.
    pub fn from_pem(roots_pem: &[u8]) -> Result<TrustAnchor, TlsConfigError> {
        Ok(TrustAnchor::from_der(certificates_from_pem(roots_pem)?))
    }

    /// Trusts exactly these node certificates (pinning; see `pinned.rs`): a peer must present
    /// one of them. Useful with self-signed certificates.
    pub fn pinned(certificates: Vec<CertificateDer<'static>>) -> TrustAnchor {
        TrustAnchor {
            certificates,
            pinned: true,
        }
    }

    /// Trusts the CA certificates in a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<TrustAnchor, TlsConfigError> {
        TrustAnchor::from_pem(&read(path)?)
    }

    fn root_store(&self) -> Result<Arc<RootCertStore>, TlsConfigError> {
        let mut store = RootCertStore::empty();
        for root in &self.certificates {
            store.add(root.clone()).map_err(rustls_error)?;
        }
        Ok(Arc::new(store))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|cause| TlsConfigError::Read {
        path: path.display().to_string(),
        cause,
    })
}

fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certificates = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsConfigError::Pem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certificates)
}

fn rustls_error(error: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::Rustls(error.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_verifier(
    trust: &TrustAnchor,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsConfigError> {
    if trust.pinned {
        let pinned = PinnedVerifier::new(trust.certificates.clone(), provider());
        return Ok(Arc::new(pinned));
    }
    WebPkiClientVerifier::builder_with_provider(trust.root_store()?, provider())
        .build()
        .map_err(rustls_error)
}

fn server_verifier(
    trust: &TrustAnchor,
) -> Result<Arc<dyn rustls::client::danger::ServerCertVerifier>, TlsConfigError> {
    if trust.pinned {
        let pinned = PinnedVerifier::new(trust.certificates.clone(), provider());
        return Ok(Arc::new(pinned));
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        trust.root_store()?,
        provider(),
    )
    .build()
    .map_err(rustls_error)?;
    Ok(verifier)
}

/// The server side: TLS 1.3, our identity, client certificates required against `trust`.
pub(crate) fn server_config(
    identity: &NodeIdentity,
    trust: &TrustAnchor,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error)?
        .with_client_cert_verifier(client_verifier(trust)?)
        .with_single_cert(
            identity.cert_chain.clone(),
            identity.private_key.clone_key(),
        )
        .map_err(rustls_error)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Which certificates a TLS server for clients (a RESP port, not the bus) asks of them:
/// Redis's `tls-auth-clients yes | optional | no`.
#[derive(Clone, Debug)]
pub enum ClientCertificates {
    /// Every client presents a certificate `trust` accepts, or the handshake fails
    /// (Redis's default, `yes`).
    Required(TrustAnchor),
    /// A client may present one, which must then be one `trust` accepts (`optional`); with
    /// a pinned anchor, as `Required` (a pin admits exactly its certificate).
    Optional(TrustAnchor),
    /// None is asked for (`no`): any client completes the handshake (then AUTH applies).
    NotRequested,
}

/// The server side of a port for clients (the RESP gateway's): TLS 1.2 or 1.3, our
/// identity, client certificates as `clients` says; no ALPN is required.
pub fn client_port_server_config(
    identity: &NodeIdentity,
    clients: &ClientCertificates,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match clients {
        ClientCertificates::Required(trust) => {
            builder.with_client_cert_verifier(client_verifier(trust)?)
        }
        ClientCertificates::Optional(trust) if !trust.pinned => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(trust.root_store()?, provider())
                .allow_unauthenticated()
                .build()
                .map_err(rustls_error)?,
        ),
        // A pin is an exact certificate: optional pinning would admit anyone.
        ClientCertificates::Optional(trust) => {
            builder.with_client_cert_verifier(client_verifier(trust)?)
        }
        ClientCertificates::NotRequested => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(
            identity.cert_chain.clone(),
            identity.private_key.clone_key(),
        )
        .map_err(rustls_error)
}

/// The client side: TLS 1.3, the server verified against `trust`, our identity presented.
pub(crate) fn client_config(
    identity: &NodeIdentity,
    trust: &TrustAnchor,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error)?
        // `dangerous` is only rustls' name for "bring your own verifier": both verifiers here
        // check the peer (CA chain and name, or an exact pin); neither accepts anything.
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(trust)?)
        .with_client_auth_cert(
            identity.cert_chain.clone(),
            identity.private_key.clone_key(),
        )
        .map_err(rustls_error)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A rustls failure inside an IO error as the link's error: a certificate the other side
/// does not trust, or none, is an authentication refusal (by us, or by the peer's alert),
/// any other TLS failure a TLS error; `None` when the error is not rustls'.
pub(crate) fn link_error_from_io(error: &std::io::Error) -> Option<crate::LinkError> {
    use rustls::AlertDescription as Alert;
    let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::CertificateUnknown
            | Alert::DecryptError,
        ) => crate::LinkError::Authentication(tls.to_string()),
        _ => crate::LinkError::Tls(tls.to_string()),
    })
}
