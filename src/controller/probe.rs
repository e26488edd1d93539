//! Asks dockerd itself, over mutual TLS with the tenant's client certificate, whether it answers.
//! Pod readiness alone is not enough: this is what a client would see.
//!
//! An engine runs its tenant's code, so this client trusts it for nothing: it dials the address of
//! the pod the operator owns (never a Service, whose endpoints any pod wearing the right labels can
//! join), every step has its own timeout, every body is capped at `MAX_BODY`, and only a short,
//! printable version string is taken from the answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::resources::DOCKER_TLS_PORT;
use crate::tls::{self, Pem};

/// The most the operator reads of one answer from an engine.
pub const MAX_BODY: usize = 16 * 1024;
/// The longest version string taken into status.
pub const MAX_VERSION: usize = 64;
/// Each step (connect, TLS, HTTP handshake, one request with its body) must finish within this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole check must finish within this.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

/// How to reach the engine.
pub enum Route {
    /// Dial the owned engine pod's IP directly (in the cluster).
    Direct(String),
    /// Tunnel through the API server to the owned pod, by name (works from outside the cluster).
    PortForward(Box<Api<Pod>>, String),
}

/// Asks dockerd for `/_ping` and `/version`; returns the engine version or why it did not answer.
/// The server certificate is verified for `server_name`, a Service DNS name, whatever the route.
pub async fn probe(route: Route, server_name: &str, ca_pem: &str, client: &Pem) -> Result<String, String> {
    let config = tls::client_config(ca_pem, client).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| format!("bad server name: {e}"))?;
    let work = async {
        match route {
            Route::Direct(ip) => {
                let addr = ip.parse::<std::net::IpAddr>().map_err(|_| format!("the engine pod has no IP ({ip:?})"))?;
                let tcp = step("connect", tokio::net::TcpStream::connect((addr, DOCKER_TLS_PORT as u16)))
                    .await?
                    .map_err(|e| format!("cannot connect to {ip}:{DOCKER_TLS_PORT}: {e}"))?;
                talk(tcp, config, name).await
            }
            Route::PortForward(pods, pod) => {
                let mut pf = step("port-forward", pods.portforward(&pod, &[DOCKER_TLS_PORT as u16]))
                    .await?
                    .map_err(|e| format!("cannot port-forward to pod {pod}: {}", crate::error::plain(&e)))?;
                let stream = pf.take_stream(DOCKER_TLS_PORT as u16).ok_or("port-forward gave no stream")?;
                let result = talk(stream, config, name).await;
                pf.abort();
                result
            }
        }
    };
    let secs = CHECK_TIMEOUT.as_secs();
    tokio::time::timeout(CHECK_TIMEOUT, work).await.map_err(|_| format!("no answer within {secs}s"))?
}

/// `work`, or an error naming `what` when it takes longer than `STEP_TIMEOUT`.
async fn step<T>(what: &str, work: impl Future<Output = T>) -> Result<T, String> {
    let secs = STEP_TIMEOUT.as_secs();
    tokio::time::timeout(STEP_TIMEOUT, work).await.map_err(|_| format!("{what} took longer than {secs}s"))
}

async fn talk<S>(stream: S, config: rustls::ClientConfig, name: ServerName<'static>) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tls = step("TLS handshake", tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream))
        .await?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (mut sender, conn) = step("HTTP handshake", hyper::client::conn::http1::handshake(TokioIo::new(tls)))
        .await?
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(conn);
    let ping = get(&mut sender, "/_ping").await;
    let version = match &ping {
        Ok(_) => get(&mut sender, "/version").await,
        Err(_) => Err(String::new()),
    };
    driver.abort();
    let ping = ping?;
    if ping.trim() != "OK" {
        return Err(format!("/_ping answered {:?}", printable(&ping, 32)));
    }
    version_of(&version?)
}

/// The engine version in a `/version` answer, if it is a sane version string.
pub fn version_of(body: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Version")]
        version: Option<String>,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|e| format!("/version is not JSON: {e}"))?;
    let v = answer.version.ok_or("/version has no Version")?;
    let sane = !v.is_empty()
        && v.len() <= MAX_VERSION
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_' | b'~'));
    if sane { Ok(v) } else { Err(format!("/version's Version {:?} is not a version string", printable(&v, 32))) }
}

/// At most `max` characters of `s`, control characters dropped: engine text is safe to quote.
pub fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) -> Result<String, String> {
    let req =
        hyper::Request::get(path).header("host", "docker").body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let res = step(&format!("GET {path}"), sender.send_request(req)).await?.map_err(|e| format!("GET {path}: {e}"))?;
    let status = res.status();
    let body = step(&format!("reading {path}"), Limited::new(res.into_body(), MAX_BODY).collect())
        .await?
        .map_err(|e| format!("GET {path}: {e} (the operator reads at most {MAX_BODY} bytes)"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("GET {path} answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_version_strings_are_taken() {
        assert_eq!(version_of(r#"{"Version":"28.5.2","ApiVersion":"1.51"}"#), Ok("28.5.2".into()));
        assert_eq!(version_of(r#"{"Version":"29.0.0-rc.1+dirty"}"#), Ok("29.0.0-rc.1+dirty".into()));
        for bad in [
            format!(r#"{{"Version":"{}"}}"#, "9".repeat(65)),
            r#"{"Version":"1.0\n<script>"}"#.to_string(),
            r#"{"Version":""}"#.to_string(),
            r#"{"Version":"1 2"}"#.to_string(),
            r#"{"Version":28}"#.to_string(),
            r#"{}"#.to_string(),
            "not json".to_string(),
        ] {
            assert!(version_of(&bad).is_err(), "{bad}");
        }
    }

    /// A hostile engine on loopback: serves a valid certificate, then answers `reply` (or nothing)
    /// on every request. Returns its port, the CA and the client certificate.
    async fn hostile(reply: Option<&'static [u8]>, endless: bool) -> (u16, String, Pem) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let now = tls::now();
        let ca = tls::new_ca("test-ca", now).expect("ca");
        let server = tls::issue_server(&ca, "engine", &["web.team-a.svc".into()], 2, now).expect("server");
        let client = tls::issue_client(&ca, "tenant", 2, now).expect("client");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(&ca.cert, &server).expect("cfg")));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = [0u8; 4096];
                    while tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let Some(reply) = reply else { continue };
                        if tls.write_all(reply).await.is_err() {
                            return;
                        }
                        // An endless body: the same chunk forever.
                        while endless && tls.write_all(&[b'A'; 4096]).await.is_ok() {}
                    }
                });
            }
        });
        (port, ca.cert, client)
    }

    async fn check(port: u16, ca: &str, client: &Pem) -> Result<String, String> {
        // The route dials port 2376; tests dial the hostile engine's port through the same code path.
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let config = tls::client_config(ca, client).expect("config");
        let name = ServerName::try_from("web.team-a.svc".to_string()).expect("name");
        tokio::time::timeout(CHECK_TIMEOUT, talk(tcp, config, name)).await.unwrap_or(Err("overall timeout".into()))
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_cap() {
        let head: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n";
        let (port, ca, client) = hostile(Some(head), true).await;
        let started = std::time::Instant::now();
        let err = check(port, &ca, &client).await.expect_err("refused");
        assert!(err.contains("length limit exceeded") && err.contains("at most 16384 bytes"), "{err}");
        assert!(started.elapsed() < CHECK_TIMEOUT, "cut at the cap, not by the timeout");
    }

    #[tokio::test]
    async fn a_silent_engine_times_out_per_step() {
        let (port, ca, client) = hostile(None, false).await;
        let err = check(port, &ca, &client).await.expect_err("silent");
        assert_eq!(err, "GET /_ping took longer than 3s");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_a_version_is_not_taken() {
        let (port, ca, client) = hostile(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"), false).await;
        // /_ping says OK and so does /version: "OK" is not JSON.
        let err = check(port, &ca, &client).await.expect_err("not a version");
        assert!(err.starts_with("/version is not JSON"), "{err}");
    }

    #[test]
    fn engine_text_is_quoted_without_control_characters() {
        assert_eq!(printable("OK\u{1b}[31m\r\nrest", 5), "OK[31");
    }
}
