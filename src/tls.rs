//! Pure certificate work: a CA per sandbox, the engine's server certificate, the tenant's client
//! certificate (all ECDSA P-256, which keeps generation in milliseconds), inspection and renewal.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// Lifetime of a sandbox CA, in days.
pub const CA_VALIDITY_DAYS: u32 = 3650;

/// A certificate and its private key, PEM encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8). Never logged.
    pub key: String,
}

/// What the operator needs to know about an existing certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// DNS names and IP addresses in the subjectAltName extension.
    pub sans: Vec<String>,
}

/// Certificate errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// Stored material does not parse.
    #[error("stored certificate material is invalid: {0}")]
    Parse(String),
    /// rustls refused the material.
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, days: u32) {
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
}

/// A new self-signed CA for one sandbox.
pub fn new_ca(common_name: &str, now: OffsetDateTime) -> Result<Pem, TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, now, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// A server certificate for dockerd, valid for `sans` (DNS names and IP addresses).
pub fn issue_server(
    ca: &Pem,
    common_name: &str,
    sans: &[String],
    days: u32,
    now: OffsetDateTime,
) -> Result<Pem, TlsError> {
    issue(ca, common_name, sans, ExtendedKeyUsagePurpose::ServerAuth, days, now)
}

/// A client certificate for the tenant.
pub fn issue_client(ca: &Pem, common_name: &str, days: u32, now: OffsetDateTime) -> Result<Pem, TlsError> {
    issue(ca, common_name, &[], ExtendedKeyUsagePurpose::ClientAuth, days, now)
}

fn issue(
    ca: &Pem,
    common_name: &str,
    sans: &[String],
    usage: ExtendedKeyUsagePurpose,
    days: u32,
    now: OffsetDateTime,
) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// Reads validity and SANs from a PEM certificate.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, TlsError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| TlsError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| TlsError::Parse(e.to_string()))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push((*d).to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo { not_before: validity.not_before.timestamp(), not_after: validity.not_after.timestamp(), sans })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether `cert_pem` carries a valid signature of the CA in `ca_pem`.
pub fn is_signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |s: &str| x509_parser::pem::parse_x509_pem(s.as_bytes()).ok().map(|(_, p)| p);
    let (Some(cert), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else { return false };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else { return false };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Renew when less than a third of the lifetime is left (or the certificate is already invalid).
pub fn needs_renewal(info: &CertInfo, now_unix: i64) -> bool {
    let lifetime = info.not_after - info.not_before;
    now_unix < info.not_before || info.not_after - now_unix < lifetime / 3
}

/// The SANs the engine's server certificate must carry: the Service's names at every level of
/// qualification, its ClusterIP and load balancer addresses, localhost (for `kubectl port-forward`)
/// and the spec's extra names. Sorted and without duplicates, so it compares with `inspect`.
pub fn server_sans(
    service: &str,
    namespace: &str,
    cluster_domain: &str,
    addresses: &[String],
    extra: &[String],
) -> Vec<String> {
    let mut sans = vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    sans.extend(addresses.iter().filter(|a| !a.is_empty() && *a != "None").cloned());
    sans.extend(extra.iter().cloned());
    normalize(sans)
}

/// The names a pooled engine's server certificate adds: every Service of its namespace, since a
/// claimant's Service (named as the claimant) reaches it. Trust stays per engine: only clients of
/// that engine's own CA accept the certificate.
pub fn pooled_sans(namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![format!("*.{namespace}.svc"), format!("*.{namespace}.svc.{cluster_domain}")]
}

/// Sorts and deduplicates a SAN list.
pub fn normalize(mut sans: Vec<String>) -> Vec<String> {
    sans.sort();
    sans.dedup();
    sans
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse(e.to_string()))
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Parse(e.to_string()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration that trusts only the sandbox CA and presents `client`.
pub fn client_config(ca_pem: &str, client: &Pem) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(&client.cert)?, key(&client.key)?)?)
}

/// A rustls server configuration that presents `server` and requires a client certificate from
/// the sandbox CA, as dockerd does with `--tlsverify`.
pub fn server_config(ca_pem: &str, server: &Pem) -> Result<rustls::ServerConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem)? {
        roots.add(cert)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&server.cert)?, key(&server.key)?)?)
}

/// Current time for certificate work.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats Unix seconds as RFC 3339 for status.
pub fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map(|t| t.to_string()).unwrap_or_default()
}
