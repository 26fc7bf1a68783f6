//! TLS termination with rustls: certificates from PEM files, one chosen per
//! connection by the name the client asked for (SNI).

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "aws-lc")]
use rustls::crypto::aws_lc_rs as provider;
#[cfg(all(feature = "ring", not(feature = "aws-lc")))]
use rustls::crypto::ring as provider;
#[cfg(not(any(feature = "aws-lc", feature = "ring")))]
compile_error!(
    "build with the \"aws-lc\" (default) or the \"ring\" feature: TLS needs a crypto provider"
);
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A listener's `tls` table: certificate chain and key files, in order of
/// preference (the first also serves clients that send no name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub pairs: Vec<(PathBuf, PathBuf)>,
    /// The protocols offered over ALPN, in order of preference.
    pub alpn: Vec<Vec<u8>>,
}

/// What a TLS listener offers unless its `alpn` says otherwise.
pub fn default_alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// Reads the files and makes the rustls configuration for a listener.
/// Where the TLS library's log lines come from.
pub const LOG_TARGET: &str = "rustls";

/// Its warning about a client's SNI it ignored (an IP address, a name
/// that is no host name): counted, not logged as a warning.
pub fn is_ignored_sni(message: &str) -> bool {
    message.starts_with("Illegal SNI")
}

/// A TLS listener's configuration, shared by its connections.
pub type ServerTls = Arc<rustls::ServerConfig>;

pub fn server_config(files: &TlsFiles) -> Result<ServerTls, String> {
    let provider = Arc::new(provider::default_provider());
    let mut certificates = Vec::new();
    for (cert, key) in &files.pairs {
        certificates.push(load(&provider, cert, key)?);
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByName { certificates }));
    config.alpn_protocols = files.alpn.clone();
    Ok(Arc::new(config))
}

fn load(
    provider: &rustls::crypto::CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|error| format!("{}: {error}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|error| format!("{}: {error}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, key_der, provider)
        .map_err(|error| format!("{} and {}: {error}", cert.display(), key.display()))?;
    Ok(Arc::new(certified))
}

/// Picks the first certificate valid for the requested name, else the
/// first one.
#[derive(Debug)]
struct ByName {
    certificates: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wanted = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name.to_owned()).ok());
        let valid_for = |certified: &Arc<CertifiedKey>| {
            let (Some(wanted), Some(leaf)) = (&wanted, certified.cert.first()) else {
                return false;
            };
            webpki::EndEntityCert::try_from(leaf)
                .is_ok_and(|leaf| leaf.verify_is_valid_for_subject_name(wanted).is_ok())
        };
        self.certificates
            .iter()
            .find(|certified| valid_for(certified))
            .or(self.certificates.first())
            .cloned()
    }
}
