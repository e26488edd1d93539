//! The local end of `kubectl dsb connect`: a TCP listener whose every accepted connection gets its
//! own port-forward stream to the engine pod through the API server. `kubectl port-forward` shares
//! one connection to the kubelet between all clients and exits when dockerd resets one of them;
//! here a failed or reset stream ends only the client connection it carries, and the next client
//! connection opens a new stream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};

use super::error::{Error, Result};
use crate::resources::DOCKER_TLS_PORT;

/// How long opening one port-forward stream may take before the client connection is dropped.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TCP connection to the Service's ClusterIP may take to count as reachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The engine's TLS port as port-forward wants it.
fn engine_port() -> u16 {
    u16::try_from(DOCKER_TLS_PORT).unwrap_or(2376)
}

/// Binds the tunnel's listener; a taken port is [`Error::PortInUse`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => Error::PortInUse { addr },
        _ => Error::Other(format!("cannot listen on {addr}: {e}")),
    })
}

/// Whether a TCP connection to `addr` succeeds within [`PROBE_TIMEOUT`].
pub async fn reachable(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// Counters of a tunnel, printed when it stops.
#[derive(Default, Debug)]
pub struct Stats {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Of those, the ones whose stream could not be opened or broke.
    pub failed: AtomicU64,
}

/// Where the tunnel leads: the engine pod `pod` in the namespace of `pods`.
#[derive(Clone)]
pub struct Engine {
    /// Pods of the sandbox's namespace.
    pub pods: Api<Pod>,
    /// `NAME-engine`.
    pub pod: String,
    /// The namespace, for messages.
    pub namespace: String,
    /// Asked before each connection: wakes an engine suspended when idle.
    pub waker: Option<Arc<super::lifecycle::Waker>>,
}

/// Accepts connections on `listener` until `shutdown` resolves; each is forwarded on its own task
/// through its own port-forward stream.
pub async fn serve(listener: TcpListener, engine: Engine, shutdown: impl Future<Output = ()>) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let id = stats.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                    let (engine, stats) = (engine.clone(), stats.clone());
                    tokio::spawn(async move {
                        if let Err(why) = forward(&engine, socket).await {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{} connection {id} from {peer}: {why}", now());
                        }
                    });
                }
                // e.g. too many open files: say so, and keep serving the connections that work
                Err(e) => {
                    eprintln!("{} accept: {e}", now());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    stats
}

/// Copies between `socket` and a new port-forward stream to the engine until either side ends.
/// The stream is closed afterwards whatever happened; nothing is shared with other connections.
async fn forward(engine: &Engine, mut socket: TcpStream) -> std::result::Result<(), String> {
    let _ = socket.set_nodelay(true);
    if let Some(waker) = &engine.waker {
        waker.ready().await.map_err(|e| e.to_string())?;
    }
    let port = engine_port();
    let label = format!("{}/{}", engine.namespace, engine.pod);
    let mut pf = match tokio::time::timeout(OPEN_TIMEOUT, engine.pods.portforward(&engine.pod, &[port])).await {
        Ok(Ok(pf)) => pf,
        Ok(Err(e)) => {
            return Err(super::error::api("create", "pods/portforward", &engine.pod, &engine.namespace)(e).to_string());
        }
        Err(_) => return Err(format!("opening a port-forward to pod {} took over {OPEN_TIMEOUT:?}", label)),
    };
    let Some(mut stream) = pf.take_stream(port) else {
        pf.abort();
        return Err("the port-forward has no stream for port 2376".into());
    };
    let errors = pf.take_error(port);
    let pod_error = async move {
        match errors {
            Some(e) => e.await,
            None => None,
        }
    };
    let result = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut socket, &mut stream) => match copied {
            Ok(_) => Ok(()),
            // the client went away without a goodbye (killed): only this connection is affected
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => Ok(()),
            Err(e) => Err(format!("stream to pod {} broke: {e}", label)),
        },
        Some(message) = pod_error => Err(format!("pod {} refused the stream: {message}", label)),
    };
    drop(stream);
    pf.abort();
    let _ = pf.join().await;
    result
}

/// Local time of day for log lines (UTC, like kubectl's).
fn now() -> String {
    let t = jiff::Timestamp::now();
    t.strftime("%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_named() {
        let first = bind("127.0.0.1:0".parse().expect("addr")).await.expect("binds");
        let addr = first.local_addr().expect("addr");
        match bind(addr).await {
            Err(Error::PortInUse { addr: a }) => assert_eq!(a, addr),
            other => panic!("expected PortInUse, got {:?}", other.map(|_| ())),
        }
    }

    /// The docker client verifies the engine's certificate against the host it dials: through the
    /// tunnel that is 127.0.0.1, which must be an IP address SAN (Go ignores IPs in DNS SANs).
    #[test]
    fn the_server_certificate_names_loopback_as_an_ip_address() {
        use x509_parser::extensions::GeneralName;
        let now = time::OffsetDateTime::now_utc();
        let ca = crate::tls::new_ca("test", now).expect("ca");
        let sans = crate::tls::server_sans("web", "team-a", "cluster.local", &["10.96.0.7".into()], &[]);
        let leaf = crate::tls::issue_server(&ca, "web", &sans, 30, now).expect("leaf");
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.cert.as_bytes()).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        let names = cert.subject_alternative_name().expect("ext").expect("has SANs").value.general_names.clone();
        let ips: Vec<&[u8]> =
            names.iter().filter_map(|n| if let GeneralName::IPAddress(b) = n { Some(*b) } else { None }).collect();
        assert!(ips.contains(&&[127u8, 0, 0, 1][..]), "no IP SAN 127.0.0.1: {names:?}");
        assert!(ips.contains(&&[10u8, 96, 0, 7][..]), "no IP SAN for the ClusterIP: {names:?}");
        assert!(names.iter().any(|n| matches!(n, GeneralName::DNSName("localhost"))));
    }

    #[tokio::test]
    async fn reachability_is_a_tcp_connect() {
        let listener = bind("127.0.0.1:0".parse().expect("addr")).await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        assert!(reachable(addr).await);
        drop(listener);
        assert!(!reachable(addr).await);
    }
}
