//! A development cluster CA made with `rcgen`: issues node certificates so a cluster (or a
//! test) can run mutual TLS without an external PKI. Not for production: the CA key lives in
//! memory and is never rotated.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::tls::{NodeIdentity, TlsConfigError, TrustAnchor, CLUSTER_SERVER_NAME_DEFAULT};

/// A self-signed cluster CA that signs node certificates.
pub struct DevCertificateAuthority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

fn generation_error(error: rcgen::Error) -> TlsConfigError {
    TlsConfigError::Generate(error.to_string())
}

impl DevCertificateAuthority {
    /// Generates a new CA key pair (ECDSA P-256) and self-signed CA certificate.
    pub fn generate() -> Result<DevCertificateAuthority, TlsConfigError> {
        let key = KeyPair::generate().map_err(generation_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generation_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "slotkv development cluster CA");
        let certificate = params.self_signed(&key).map_err(generation_error)?;
        Ok(DevCertificateAuthority { certificate, key })
    }

    /// The trust anchor every node of the cluster should be configured with.
    pub fn trust_anchor(&self) -> TrustAnchor {
        TrustAnchor::from_der(vec![self.certificate.der().clone()])
    }

    /// The CA certificate as PEM (to write a `ca.pem` for other processes).
    pub fn certificate_pem(&self) -> String {
        self.certificate.pem()
    }

    /// Issues a node certificate for the cluster server name
    /// ([`CLUSTER_SERVER_NAME_DEFAULT`]) and `localhost`, valid for server and client auth.
    pub fn issue_node_identity(&self) -> Result<NodeIdentity, TlsConfigError> {
        let (certificate, key) = self.issue_node_certificate()?;
        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(NodeIdentity::from_der(
            vec![certificate.der().clone()],
            private_key,
        ))
    }

    /// [`DevCertificateAuthority::issue_node_identity`] as PEM: the certificate and the
    /// private key (PKCS #8), to write the files a node process loads (kvnode's
    /// `--tls-cert-file` and `--tls-key-file`).
    pub fn issue_node_pem(&self) -> Result<(String, String), TlsConfigError> {
        let (certificate, key) = self.issue_node_certificate()?;
        Ok((certificate.pem(), key.serialize_pem()))
    }

    /// Issues a node certificate naming `names` (DNS names or IP addresses) besides the
    /// cluster server name and `localhost`: for per-node identity, the node's announced
    /// host and its node-id name.
    pub fn issue_named_node_identity(
        &self,
        names: &[String],
    ) -> Result<NodeIdentity, TlsConfigError> {
        let (certificate, key) = self.issue_certificate(names)?;
        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(NodeIdentity::from_der(
            vec![certificate.der().clone()],
            private_key,
        ))
    }

    /// [`DevCertificateAuthority::issue_named_node_identity`] as PEM: the certificate and
    /// the private key (PKCS #8).
    pub fn issue_named_node_pem(
        &self,
        names: &[String],
    ) -> Result<(String, String), TlsConfigError> {
        let (certificate, key) = self.issue_certificate(names)?;
        Ok((certificate.pem(), key.serialize_pem()))
    }

    fn issue_node_certificate(&self) -> Result<(rcgen::Certificate, KeyPair), TlsConfigError> {
        self.issue_certificate(&[])
    }

    fn issue_certificate(
        &self,
        extra_names: &[String],
    ) -> Result<(rcgen::Certificate, KeyPair), TlsConfigError> {
        let mut names = vec![
            CLUSTER_SERVER_NAME_DEFAULT.to_string(),
            "localhost".to_string(),
        ];
        names.extend_from_slice(extra_names);
        let key = KeyPair::generate().map_err(generation_error)?;
        let mut params = CertificateParams::new(names).map_err(generation_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "slotkv node");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .map_err(generation_error)?;
        Ok((certificate, key))
    }
}

/// A self-signed node certificate for development, to be trusted by pinning
/// ([`TrustAnchor::pinned`] with every node's [`NodeIdentity::certificate`]).
pub fn self_signed_node_identity() -> Result<NodeIdentity, TlsConfigError> {
    let names = vec![
        CLUSTER_SERVER_NAME_DEFAULT.to_string(),
        "localhost".to_string(),
    ];
    let key = KeyPair::generate().map_err(generation_error)?;
    let params = CertificateParams::new(names).map_err(generation_error)?;
    let certificate = params.self_signed(&key).map_err(generation_error)?;
    let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(NodeIdentity::from_der(
        vec![certificate.der().clone()],
        private_key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{client_config, server_config, ALPN_PROTOCOL};

    #[test]
    fn issued_identities_build_client_and_server_configs() {
        let authority = DevCertificateAuthority::generate().unwrap();
        let identity = authority.issue_node_identity().unwrap();
        assert!(server_config(&identity, &authority.trust_anchor(), ALPN_PROTOCOL).is_ok());
        assert!(client_config(&identity, &authority.trust_anchor(), ALPN_PROTOCOL).is_ok());
    }

    #[test]
    fn the_ca_pem_round_trips_into_a_trust_anchor() {
        let authority = DevCertificateAuthority::generate().unwrap();
        assert!(TrustAnchor::from_pem(authority.certificate_pem().as_bytes()).is_ok());
        assert!(matches!(
            TrustAnchor::from_pem(b"not pem"),
            Err(TlsConfigError::NoCertificate)
        ));
    }

    #[test]
    fn identities_load_from_pem_files_and_missing_files_are_reported() {
        let authority = DevCertificateAuthority::generate().unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![CLUSTER_SERVER_NAME_DEFAULT.to_string()]).unwrap();
        let certificate = params
            .signed_by(&key, &authority.certificate, &authority.key)
            .unwrap();
        let directory = std::env::temp_dir().join(format!("slotkv-pem-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let (cert_path, key_path) = (directory.join("node.pem"), directory.join("node.key"));
        std::fs::write(&cert_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let identity = NodeIdentity::from_pem_files(&cert_path, &key_path).unwrap();
        assert_eq!(identity.certificate(), Some(certificate.der()));
        assert!(server_config(&identity, &authority.trust_anchor(), ALPN_PROTOCOL).is_ok());
        let missing = NodeIdentity::from_pem_files(&directory.join("absent.pem"), &key_path);
        assert!(matches!(missing, Err(TlsConfigError::Read { .. })));
        let no_key = NodeIdentity::from_pem(certificate.pem().as_bytes(), b"");
        assert!(matches!(no_key, Err(TlsConfigError::NoPrivateKey)));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
