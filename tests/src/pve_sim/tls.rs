//! Test PKI: a CA and a leaf certificate for 127.0.0.1/localhost, generated at start.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// The generated certificates and the TLS server configuration using them.
pub(crate) struct Pki {
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    pub(crate) ca_pem: String,
    pub(crate) fingerprint: String,
}

/// SHA-256 of a DER certificate as uppercase colon-separated hex (PVE style).
pub(crate) fn fingerprint_of(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Generates a CA and a leaf for `127.0.0.1` and `localhost` signed by it, and builds a
/// rustls server config (ring provider).
pub(crate) fn generate(node: &str) -> anyhow::Result<Pki> {
    generate_for(node, &["127.0.0.1".to_string(), "localhost".to_string()])
}

/// Like [`generate`], with a leaf certificate for exactly `names` (DNS names or IPs).
pub(crate) fn generate_for(node: &str, names: &[String]) -> anyhow::Result<Pki> {
    generate_with(node, names, Lifetimes::default())
}

/// How long the generated certificates stay valid from now; `None`: rcgen's default
/// (until 4096).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lifetimes {
    pub(crate) leaf: Option<Duration>,
    pub(crate) ca: Option<Duration>,
}

/// `notBefore` a day ago, `notAfter` `valid_for` from now.
fn set_validity(params: &mut CertificateParams, valid_for: Option<Duration>) {
    if let Some(valid_for) = valid_for {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + now.saturating_sub(Duration::from_secs(86_400));
        params.not_after = epoch + now + valid_for;
    }
}

/// Like [`generate_for`], with the certificates' lifetimes.
pub(crate) fn generate_with(
    node: &str,
    names: &[String],
    lifetimes: Lifetimes,
) -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(
        DnType::CommonName,
        "Proxmox Virtual Environment (felhom simulator)",
    );
    ca_dn.push(DnType::OrganizationName, "PVE Cluster Manager CA");
    ca_params.distinguished_name = ca_dn;
    set_validity(&mut ca_params, lifetimes.ca);
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().context("generating leaf key")?;
    let mut leaf_params = CertificateParams::new(names.to_vec()).context("leaf params")?;
    let mut leaf_dn = DistinguishedName::new();
    leaf_dn.push(DnType::CommonName, format!("{node}.simulator"));
    leaf_dn.push(DnType::OrganizationName, "PVE Cluster Node");
    leaf_params.distinguished_name = leaf_dn;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    set_validity(&mut leaf_params, lifetimes.leaf);
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .context("signing leaf")?;

    let leaf_der: CertificateDer<'static> = leaf_cert.der().clone();
    let fingerprint = fingerprint_of(&leaf_der);
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_der], key_der)
        .context("TLS server certificate")?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Pki {
        server_config: Arc::new(server_config),
        ca_pem: ca_cert.pem(),
        fingerprint,
    })
}
