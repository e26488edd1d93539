//! Asks dockerd itself, over mutual TLS with the tenant's client certificate, whether it answers.
//! Pod readiness alone is not enough: this is what a client would see.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::resources::DOCKER_TLS_PORT;
use crate::tls::{self, Pem};

/// How to reach the engine.
pub enum Route {
    /// Dial this address (the Service's ClusterIP) directly.
    Direct(String),
    /// Tunnel through the API server to the pod (works from outside the cluster).
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
                let tcp = tokio::net::TcpStream::connect((ip.as_str(), DOCKER_TLS_PORT as u16))
                    .await
                    .map_err(|e| format!("cannot connect to {ip}:{DOCKER_TLS_PORT}: {e}"))?;
                talk(tcp, config, name).await
            }
            Route::PortForward(pods, pod) => {
                let mut pf = pods
                    .portforward(&pod, &[DOCKER_TLS_PORT as u16])
                    .await
                    .map_err(|e| format!("cannot port-forward to pod {pod}: {}", crate::error::plain(&e)))?;
                let stream = pf.take_stream(DOCKER_TLS_PORT as u16).ok_or("port-forward gave no stream")?;
                let result = talk(stream, config, name).await;
                pf.abort();
                result
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work).await.map_err(|_| "no answer within 10s".to_string())?
}

async fn talk<S>(stream: S, config: rustls::ClientConfig, name: ServerName<'static>) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(conn);
    let ping = get(&mut sender, "/_ping").await?;
    let version = get(&mut sender, "/version").await;
    driver.abort();
    if ping.trim() != "OK" {
        return Err(format!("/_ping answered {ping:?}"));
    }
    let v: serde_json::Value = serde_json::from_str(&version?).map_err(|e| format!("/version is not JSON: {e}"))?;
    v["Version"].as_str().map(str::to_string).ok_or_else(|| "/version has no Version".to_string())
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) -> Result<String, String> {
    let req =
        hyper::Request::get(path).header("host", "docker").body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| format!("GET {path}: {e}"))?;
    let status = res.status();
    let body = res.into_body().collect().await.map_err(|e| format!("GET {path}: {e}"))?.to_bytes();
    if !status.is_success() {
        return Err(format!("GET {path} answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
