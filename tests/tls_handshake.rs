//! The generated certificates complete a real mutual-TLS handshake in-process, and a client
//! signed by another CA (or none) is refused, as dockerd's --tlsverify would refuse it.

use std::sync::Arc;

use dockersandbox_operator::tls::{self, Pem};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "web.team-a.svc";

fn sans() -> Vec<String> {
    tls::server_sans("web", "team-a", "cluster.local", &["10.96.0.42".into()], &["docker.example.com".into()])
}

fn chain() -> (Pem, Pem, Pem) {
    let now = tls::now();
    let ca = tls::new_ca("test CA", now).expect("ca");
    let server = tls::issue_server(&ca, NAME, &sans(), 90, now).expect("server");
    let client = tls::issue_client(&ca, "tenant", 90, now).expect("client");
    (ca, server, client)
}

/// Runs a handshake and one echo round trip; returns the client-side error, if any.
async fn handshake(
    server_cfg: rustls::ServerConfig,
    client_cfg: rustls::ClientConfig,
    name: &str,
) -> Result<(), String> {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let client = async {
        let mut tls = connector.connect(name, c).await.map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"pong" {
            return Err("wrong answer".to_string());
        }
        Ok(())
    };
    let result = client.await;
    let served = server.await.map_err(|e| e.to_string())?;
    result.and(served)
}

#[tokio::test]
async fn mutual_tls_succeeds_for_every_service_name_and_ip() {
    let (ca, server, client) = chain();
    for name in [
        "web",
        "web.team-a",
        NAME,
        "web.team-a.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "10.96.0.42",
        "docker.example.com",
    ] {
        let s = tls::server_config(&ca.cert, &server).expect("server config");
        let c = tls::client_config(&ca.cert, &client).expect("client config");
        handshake(s, c, name).await.unwrap_or_else(|e| panic!("handshake for {name} failed: {e}"));
    }
}

#[tokio::test]
async fn client_signed_by_another_ca_is_refused() {
    let (ca, server, _) = chain();
    let (other_ca, _, other_client) = chain();
    assert!(!tls::is_signed_by(&other_client.cert, &ca.cert));
    let s = tls::server_config(&ca.cert, &server).expect("server config");
    // The client trusts the right CA for the server, but presents a certificate from another CA.
    let c = tls::client_config(&ca.cert, &other_client).expect("client config");
    assert!(handshake(s, c, NAME).await.is_err(), "a foreign client certificate must be refused");
    drop(other_ca);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let (ca, server, _) = chain();
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert.as_bytes()).expect("ca der");
    roots.add(der).expect("root");
    let c = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let s = tls::server_config(&ca.cert, &server).expect("server config");
    assert!(handshake(s, c, NAME).await.is_err());
}

#[tokio::test]
async fn server_name_outside_the_sans_is_refused() {
    let (ca, server, client) = chain();
    let s = tls::server_config(&ca.cert, &server).expect("server config");
    let c = tls::client_config(&ca.cert, &client).expect("client config");
    let err = handshake(s, c, "evil.example.com").await.expect_err("wrong name must fail");
    assert!(err.to_lowercase().contains("name") || err.contains("NotValidForName"), "{err}");
}

#[test]
fn inspect_reads_sans_and_validity_and_renewal_triggers() {
    let (ca, server, _) = chain();
    let info = tls::inspect(&server.cert).expect("inspect");
    assert_eq!(tls::normalize(info.sans.clone()), sans());
    assert!(info.not_after - info.not_before >= 90 * 86400);
    let now = tls::now().unix_timestamp();
    assert!(!tls::needs_renewal(&info, now));
    assert!(tls::needs_renewal(&info, info.not_after - 10 * 86400), "less than a third left");
    assert!(tls::needs_renewal(&info, info.not_after + 1), "expired");
    assert!(tls::is_signed_by(&server.cert, &ca.cert));
    assert!(!server.key.is_empty() && !server.cert.contains("PRIVATE KEY"));
}

use rustls::pki_types::pem::PemObject;
