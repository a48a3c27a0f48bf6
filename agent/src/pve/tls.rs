//! TLS for the Proxmox API: system roots (default), a CA file, a pinned SHA-256 leaf
//! fingerprint, or — only when configured explicitly — no verification.
//!
//! In the chain-verifying modes (system roots, CA file) the certificate is checked against
//! the URL's host unless a server name is configured (`tls_server_name`): then the chain
//! is verified for that name while the connection still goes to the URL's address. That is
//! how an ACME or other CA-signed certificate for the host's DNS name works with
//! `api_url = https://127.0.0.1:8006`. A name mismatch is reported with that fix.
//!
//! The `rustls::ClientConfig` is built here with the `ring` provider and handed to reqwest
//! as a preconfigured backend. Pinning works like Proxmox's own clients (PVE::APIClient,
//! proxmox-client): only the end-entity certificate is compared, hostname and chain are not
//! checked, but the handshake signatures are still verified with the provider's algorithms,
//! so the peer must hold the pinned certificate's private key.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use super::certexpiry::{SeenCert, not_after};
use super::error::PveError;

/// A SHA-256 certificate fingerprint (32 bytes), written as colon-separated hex pairs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// A fingerprint string that is not 32 colon-separated hex pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid SHA-256 fingerprint: expected 32 colon-separated hex pairs like AB:CD:…, got {0:?}"
)]
pub struct FingerprintParseError(pub String);

impl Fingerprint {
    /// The SHA-256 fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares without an early exit on the first differing byte.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Parses `AB:CD:…` (32 pairs, case-insensitive), the format PVE prints.
    fn from_str(s: &str) -> Result<Fingerprint, FingerprintParseError> {
        let bad = || FingerprintParseError(s.to_string());
        let t = s.trim();
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() != 32 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    /// Uppercase colon hex, as PVE shows it (`GET /nodes` `ssl_fingerprint`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// How the API server's certificate is verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// The operating system's trust store (default).
    #[default]
    SystemRoots,
    /// Trust anchors from a PEM file (for example `/etc/pve/pve-root-ca.pem`).
    CaFile(PathBuf),
    /// Accept exactly the leaf certificate with this SHA-256 fingerprint.
    Pinned(Fingerprint),
    /// No verification at all. Only when the configuration says so explicitly; the agent
    /// warns at start.
    Insecure,
}

/// Records what the pinning verifier saw, so a failed handshake becomes an error that shows
/// the presented fingerprint (reqwest would otherwise bury it in an opaque error chain).
#[derive(Debug, Default)]
pub(crate) struct PinReport {
    last_mismatch: Mutex<Option<Fingerprint>>,
}

impl PinReport {
    /// The fingerprint of the last rejected certificate, if any (cleared on read).
    pub(crate) fn take_mismatch(&self) -> Option<Fingerprint> {
        self.last_mismatch.lock().ok().and_then(|mut g| g.take())
    }

    pub(crate) fn record(&self, fp: Fingerprint) {
        if let Ok(mut g) = self.last_mismatch.lock() {
            *g = Some(fp);
        }
    }
}

/// The error handed to rustls on a pin mismatch.
#[derive(Debug, thiserror::Error)]
#[error("certificate fingerprint mismatch: server presented {presented}, expected {expected}")]
struct PinMismatch {
    presented: Fingerprint,
    expected: Fingerprint,
}

/// Which leaf certificates [`LeafVerifier`] accepts.
#[derive(Debug)]
enum LeafPolicy {
    /// Exactly the one with this fingerprint; mismatches are recorded in the report.
    Pinned {
        expected: Fingerprint,
        report: Arc<PinReport>,
    },
    /// Any (explicit `tls_insecure`).
    Any,
}

/// Verifies the leaf certificate by [`LeafPolicy`] instead of a chain, but still checks the
/// handshake signatures, so the peer must hold the certificate's private key.
#[derive(Debug)]
struct LeafVerifier {
    policy: LeafPolicy,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Arc<SeenCert>,
}

impl ServerCertVerifier for LeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let LeafPolicy::Pinned { expected, report } = &self.policy else {
            self.seen.record(end_entity.as_ref());
            return Ok(ServerCertVerified::assertion());
        };
        let presented = Fingerprint::of_der(end_entity.as_ref());
        if presented.matches(expected) {
            self.seen.record(end_entity.as_ref());
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::error!(%presented, %expected, "TLS certificate fingerprint mismatch");
            report.record(presented);
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    presented,
                    expected: *expected,
                }))),
            ))
        }
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

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A certificate that does not hold the name it was checked for, with the fix.
#[derive(thiserror::Error)]
#[error(
    "the certificate is not valid for {checked} ({detail}); if it is a CA-signed (e.g. ACME) certificate for the host's DNS name, set tls_server_name to that name to verify it while still connecting to the api_url address, or pin it with tls_fingerprint"
)]
struct NameMismatch {
    checked: String,
    detail: String,
}

/// rustls shows the inner error of `CertificateError::Other` with `Debug`, and that text
/// reaches the operator: make it the readable message.
impl fmt::Debug for NameMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Verifies the chain with webpki, for a configured server name instead of the URL's host
/// when one is given, and explains a name mismatch.
#[derive(Debug)]
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: Option<ServerName<'static>>,
    seen: Arc<SeenCert>,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let checked = self.name.as_ref().unwrap_or(server_name);
        self.inner
            .verify_server_cert(end_entity, intermediates, checked, ocsp_response, now)
            .inspect(|_| self.seen.record(end_entity.as_ref()))
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(
                    ref c @ (rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }),
                ) => {
                    let checked = checked.to_str().into_owned();
                    tracing::error!(name = %checked, "TLS certificate does not hold the name it was checked for");
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                        rustls::OtherError(Arc::new(NameMismatch {
                            checked,
                            detail: c.to_string(),
                        })),
                    ))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Parses a `tls_server_name` value: a DNS name or an IP address.
pub fn parse_server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.trim().to_string())
        .map_err(|e| format!("{name:?} is not a DNS name or IP address: {e}"))
}

/// What [`client_config`] builds.
pub(crate) struct ClientTls {
    /// The rustls configuration.
    pub(crate) config: rustls::ClientConfig,
    /// The pin report when pinning, so transport errors can name the presented fingerprint.
    pub(crate) pin: Option<Arc<PinReport>>,
    /// The `notAfter` of the last accepted server certificate.
    pub(crate) seen: Arc<SeenCert>,
    /// The `notAfter` of each certificate in the CA file (CA file mode only; a certificate
    /// whose dates cannot be read is left out).
    pub(crate) ca_not_after: Vec<i64>,
}

/// Builds the rustls client configuration for `mode` (ring provider, TLS 1.2 and 1.3).
/// `server_name` (`tls_server_name`) replaces the URL's host in the chain-verifying modes.
pub(crate) fn client_config(
    mode: &TlsMode,
    server_name: Option<&str>,
) -> Result<ClientTls, PveError> {
    let seen = Arc::new(SeenCert::default());
    let mut ca_not_after = Vec::new();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let name = server_name
        .map(|n| {
            parse_server_name(n).map_err(|e| PveError::TlsSetup(format!("tls_server_name: {e}")))
        })
        .transpose()?;
    let chain = |roots: rustls::RootCertStore, provider: Arc<rustls::crypto::CryptoProvider>| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map(|inner| {
                Arc::new(ChainVerifier {
                    inner,
                    name: name.clone(),
                    seen: seen.clone(),
                })
            })
            .map_err(|e| PveError::TlsSetup(format!("TLS verifier setup: {e}")))
    };
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PveError::TlsSetup(format!("TLS protocol setup: {e}")))?;
    let (config, report) = match mode {
        TlsMode::SystemRoots => {
            let mut roots = rustls::RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for err in &loaded.errors {
                tracing::warn!(error = %err, "problem while loading system CA certificates");
            }
            let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                return Err(PveError::TlsSetup(
                    "no usable system CA certificates found; set tls_fingerprint or tls_ca_file"
                        .into(),
                ));
            }
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(chain(roots, provider.clone())?)
                    .with_no_client_auth(),
                None,
            )
        }
        TlsMode::CaFile(path) => {
            let shown = path.display();
            let mut roots = rustls::RootCertStore::empty();
            let iter = CertificateDer::pem_file_iter(path)
                .map_err(|e| PveError::TlsSetup(format!("cannot read CA file {shown}: {e}")))?;
            for cert in iter {
                let cert = cert
                    .map_err(|e| PveError::TlsSetup(format!("bad PEM in CA file {shown}: {e}")))?;
                ca_not_after.extend(not_after(cert.as_ref()));
                roots.add(cert).map_err(|e| {
                    PveError::TlsSetup(format!("unusable certificate in CA file {shown}: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(PveError::TlsSetup(format!(
                    "CA file {shown} holds no certificate"
                )));
            }
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(chain(roots, provider.clone())?)
                    .with_no_client_auth(),
                None,
            )
        }
        TlsMode::Pinned(expected) => {
            let report = Arc::new(PinReport::default());
            let verifier = LeafVerifier {
                policy: LeafPolicy::Pinned {
                    expected: *expected,
                    report: report.clone(),
                },
                algorithms,
                seen: seen.clone(),
            };
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth(),
                Some(report),
            )
        }
        TlsMode::Insecure => (
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                    policy: LeafPolicy::Any,
                    algorithms,
                    seen: seen.clone(),
                }))
                .with_no_client_auth(),
            None,
        ),
    };
    Ok(ClientTls {
        config,
        pin: report,
        seen,
        ca_not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PVE_FP: &str = "80:D4:F2:DF:64:95:CD:8D:A0:82:82:AC:48:BA:C0:7A:1B:6B:87:8B:FE:B9:83:1C:95:4E:79:58:77:99:69:F5";

    #[test]
    fn fingerprint_parses_case_insensitively_and_prints_uppercase() {
        let up: Fingerprint = PVE_FP.parse().unwrap();
        let low: Fingerprint = PVE_FP.to_lowercase().parse().unwrap();
        assert_eq!(up, low);
        assert!(up.matches(&low));
        assert_eq!(low.to_string(), PVE_FP);
    }

    #[test]
    fn fingerprint_rejects_malformed() {
        for bad in [
            "",
            "80D4F2",
            &PVE_FP[3..],
            &format!("{PVE_FP}:00"),
            &PVE_FP.replace("80:", "8G:"),
            &PVE_FP.replace(':', "-"),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprint_of_der_is_sha256() {
        let fp = Fingerprint::of_der(b"abc");
        assert!(
            fp.to_string()
                .starts_with("BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23")
        );
        assert!(!fp.matches(&Fingerprint::of_der(b"abd")));
    }

    #[test]
    fn configs_build() {
        let fp: Fingerprint = PVE_FP.parse().unwrap();
        assert!(
            client_config(&TlsMode::Pinned(fp), None)
                .unwrap()
                .pin
                .is_some()
        );
        assert!(
            client_config(&TlsMode::Insecure, None)
                .unwrap()
                .pin
                .is_none()
        );
        assert!(client_config(&TlsMode::CaFile("/nonexistent/ca.pem".into()), None).is_err());
        assert!(client_config(&TlsMode::Insecure, Some("pve.example.com")).is_ok());
        assert!(client_config(&TlsMode::Insecure, Some("not a name!")).is_err());
    }
}
