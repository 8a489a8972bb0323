//! HTTPS: the certificate and key the server presents (`TLS_CERT_FILE`, `TLS_KEY_FILE`), the
//! rustls configuration it serves with, and replacing the certificate while it serves.
//!
//! The certificate lives behind [`Certificates`], which rustls asks for it at each handshake:
//! [`Certificates::reload`] (on SIGHUP) swaps in the files' new contents for the handshakes that
//! follow, while connections already open keep the keys they agreed. A reload that fails
//! leaves the previous certificate in place. Key material never reaches a message: errors name
//! the file and what is wrong with it, never its contents or the parser's quote of them.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, TlsFiles};

/// The certificate served now, and where it is reloaded from.
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the certificate chain and key from `files`, checking that they belong together.
    pub(crate) fn load(files: &TlsFiles) -> Result<Certificates, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(files, &provider)?;
        Ok(Certificates {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Reads the files again and serves what they hold from the next handshake on; on any
    /// problem keeps serving the current certificate. Returns the new certificate's SHA-256
    /// fingerprint.
    pub(crate) fn reload(&self) -> Result<String, ConfigError> {
        let key = Arc::new(load(&self.files, &self.provider)?);
        let shown = fingerprint(&key);
        // A poisoned lock holds a whole `Arc` all the same: nothing is half-written in it.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(shown)
    }

    /// The SHA-256 fingerprint of the certificate served now.
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(&self.current())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The rustls configuration to serve with: TLS 1.3 and 1.2 only (rustls implements
    /// nothing older), ALPN `http/1.1` only (there is no HTTP/2 here), and the certificate
    /// from `self` at every handshake.
    pub(crate) fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Checks that `files` hold a certificate chain and its key, as start-up does.
pub(crate) fn check(files: &TlsFiles) -> Result<(), ConfigError> {
    Certificates::load(files).map(|_| ())
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
    let chain = read_certificates(&files.cert_file)?;
    let key = read_key(&files.key_file)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|err| match err {
        rustls::Error::InconsistentKeys(_) => ConfigError {
            variable: "TLS_KEY_FILE",
            message: format!(
                "{} is not the key of the certificate in {}",
                shown(&files.key_file),
                shown(&files.cert_file)
            ),
        },
        // rustls' own words say which kind of key it cannot use, never the key.
        other => ConfigError {
            variable: "TLS_KEY_FILE",
            message: format!(
                "the key in {} cannot be used: {other}",
                shown(&files.key_file)
            ),
        },
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let error = |message: String| ConfigError {
        variable: "TLS_CERT_FILE",
        message,
    };
    let bytes =
        std::fs::read(path).map_err(|err| error(format!("cannot read {}: {err}", shown(path))))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| error(format!("{} is not valid PEM: {err}", shown(path))))?;
    if chain.is_empty() {
        return Err(error(format!(
            "{} holds no certificate (a PEM \"BEGIN CERTIFICATE\" block, the server's own \
             first, then its chain)",
            shown(path)
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let error = |message: String| ConfigError {
        variable: "TLS_KEY_FILE",
        message,
    };
    // Zeroed when dropped: the key's PEM text is not left behind in freed memory.
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|err| error(format!("cannot read {}: {err}", shown(path))))?,
    );
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        // The parser's error may quote a line of the file: say what kind of problem only.
        let problem = match err {
            pem::Error::NoItemsFound => "holds no private key",
            pem::Error::Io(_) => "cannot be read",
            _ => "is not valid PEM",
        };
        error(format!(
            "{} {problem} (an unencrypted PEM key: \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE \
             KEY\" or \"BEGIN EC PRIVATE KEY\")",
            shown(path)
        ))
    })
}

fn shown(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// The SHA-256 fingerprint of the served (first) certificate, as `openssl x509 -fingerprint
/// -sha256` prints it, so an operator can tell which certificate is being served.
fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|leaf| fingerprint_of(leaf))
        .unwrap_or_default()
}

fn fingerprint_of(certificate: &[u8]) -> String {
    Sha256::digest(certificate)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A TLS client for `backnd-api healthcheck`, which asks this machine's own server whether it
/// is serving. It checks that the server holds the key of the certificate it presents (the
/// handshake's signature), but not who signed that certificate nor the name in it: the server
/// is asked on loopback by address, where no certificate would name it, and nothing secret is
/// sent. [`served_fingerprint`] then tells which certificate that was.
pub(crate) fn healthcheck_client() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// The SHA-256 fingerprint of the certificate a finished handshake was given, and whether it
/// is the first one in `cert_file` (a different one means the files changed and the server has
/// not been sent SIGHUP yet).
pub(crate) fn served_fingerprint(
    connection: &rustls::ClientConnection,
    cert_file: &Path,
) -> Option<(String, bool)> {
    let served = connection.peer_certificates()?.first()?;
    let on_disk = read_certificates(cert_file)
        .ok()
        .and_then(|chain| chain.into_iter().next());
    let current = on_disk.is_some_and(|leaf| leaf.as_ref() == served.as_ref());
    Some((fingerprint_of(served), current))
}

/// Accepts any certificate, but checks the handshake's signatures with it as usual.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
