//! What can go wrong in `kubectl dsb`, each said so a user knows what to do next.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Every failure of the plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No kubeconfig (or in-cluster config) could be loaded.
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    /// The sandbox does not exist.
    #[error("DockerSandbox {name} not found in namespace {namespace} (`kubectl dsb ls -A` lists them all)")]
    SandboxNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The sandbox exists but is not Ready; `condition` quotes its Ready condition.
    #[error("DockerSandbox {namespace}/{name} is not Ready (phase {phase}): {condition}")]
    NotReady {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// status.phase, or `unknown`.
        phase: String,
        /// `Ready=False, REASON: MESSAGE`.
        condition: String,
    },
    /// The API server refused: this user lacks a permission. Names the verb and the resource.
    #[error("cannot {verb} {resource} {name} in namespace {namespace}: {message}")]
    Forbidden {
        /// get, list, create (pods/portforward), ...
        verb: &'static str,
        /// secrets, pods/portforward, ...
        resource: &'static str,
        /// The object's name.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// Another API failure.
    #[error("cannot {verb} {resource} {name} in namespace {namespace}: {message}")]
    Api {
        /// The verb.
        verb: &'static str,
        /// The resource.
        resource: &'static str,
        /// The object's name (may be empty for lists).
        name: String,
        /// Its namespace.
        namespace: String,
        /// What the client or the API server said.
        message: String,
    },
    /// The client Secret lacks a key or is not text.
    #[error("Secret {namespace}/{name} has no {key}: the operator writes it; wait for the sandbox to be Ready")]
    SecretIncomplete {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The missing key.
        key: &'static str,
    },
    /// The tunnel's local port is taken.
    #[error(
        "cannot listen on {addr}: the port is in use by another process; choose another with --port (0 picks a free one)"
    )]
    PortInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`cannot write`, ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, said in full.
    #[error("{0}")]
    Other(String),
}

/// Result with the plugin's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A closure mapping a client error of `verb resource name` in `namespace` to [`Error`]: 403
/// becomes [`Error::Forbidden`], everything else [`Error::Api`] with the API server's own message.
pub fn api(
    verb: &'static str,
    resource: &'static str,
    name: &str,
    namespace: &str,
) -> impl FnOnce(kube::Error) -> Error + use<> {
    let (name, namespace) = (name.to_string(), namespace.to_string());
    move |e| {
        let message = crate::error::plain(&e);
        match e {
            kube::Error::Api(s) if s.code == 403 => Error::Forbidden { verb, resource, name, namespace, message },
            _ => Error::Api { verb, resource, name, namespace, message },
        }
    }
}

/// Whether a client error is the API server's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// An [`Error::Io`] maker for `path`.
pub fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = kube::core::Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn forbidden_names_verb_resource_and_namespace() {
        let msg = r#"secrets "web-client" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "team-a""#;
        let e = api("get", "secrets", "web-client", "team-a")(status(403, "Forbidden", msg));
        assert!(matches!(e, Error::Forbidden { .. }));
        assert_eq!(e.to_string(), format!("cannot get secrets web-client in namespace team-a: {msg}"));
    }

    #[test]
    fn other_api_errors_keep_the_servers_message() {
        let e = api("get", "services", "web", "team-a")(status(500, "InternalError", "etcd is down"));
        assert!(matches!(e, Error::Api { .. }));
        assert_eq!(e.to_string(), "cannot get services web in namespace team-a: etcd is down");
        assert!(is_not_found(&status(404, "NotFound", "gone")));
        assert!(!is_not_found(&status(403, "Forbidden", "no")));
    }

    #[test]
    fn port_in_use_says_what_to_do() {
        let e = Error::PortInUse { addr: "127.0.0.1:12376".parse().expect("addr") };
        assert!(e.to_string().contains("127.0.0.1:12376"));
        assert!(e.to_string().contains("--port"));
    }
}
