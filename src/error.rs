//! The operator's one error type.

use crate::tls::TlsError;

/// Everything that can make a reconcile fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action} {kind} {name}: {source}")]
    Kube {
        /// What the operator tried (get, apply, delete, ...).
        action: &'static str,
        /// Kind of object.
        kind: String,
        /// Name of object.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Certificate material could not be made or read.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The sandbox object has no namespace (never true for a namespaced resource read from the API).
    #[error("DockerSandbox {0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// Wraps a client error with what was attempted.
    pub fn kube(
        action: &'static str,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Self {
        let (kind, name) = (kind.into(), name.into());
        move |source| Error::Kube { action, kind, name, source }
    }

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_forbidden() => "forbidden",
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 409 => "conflict",
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 422 || s.code == 400 => "invalid",
            Error::Kube { .. } => "kube",
            Error::Tls(_) => "tls",
            Error::NoNamespace(_) => "invalid",
        }
    }

    /// Whether retrying cannot help until the spec (or RBAC) changes. The reconciler still retries
    /// such errors, slowly, because the cause may lie outside the sandbox.
    pub fn is_permanent(&self) -> bool {
        matches!(self.category(), "forbidden" | "invalid")
    }

    /// The API server's own message for a refused request, if this is one.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            Error::Kube { source: kube::Error::Api(s), .. } => Some(&s.message),
            _ => None,
        }
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
