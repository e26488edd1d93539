//! The operator's one error type.

use crate::tls::TlsError;

/// Everything that can make a reconcile fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed. Shown to people (events, conditions, logs) with only the
    /// API server's own message, never the client's debug form.
    #[error("{action} {kind} {name}: {}", plain(source))]
    Kube {
        /// What the operator tried (get, apply, delete, ...).
        action: &'static str,
        /// Kind of object.
        kind: String,
        /// Name of object.
        name: String,
        /// The client error (boxed: it is large, and errors travel through every step).
        #[source]
        source: Box<kube::Error>,
    },
    /// An object with a child's name exists but is not this sandbox's: the operator leaves it alone.
    #[error(
        "{kind} {name} already exists and {why}; the operator leaves it untouched: delete or rename it, or give the sandbox another name"
    )]
    Foreign {
        /// Kind of object.
        kind: String,
        /// Its name.
        name: String,
        /// Why it is not this sandbox's.
        why: String,
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
        move |source| Error::Kube { action, kind, name, source: Box::new(source) }
    }

    /// What kind of failure this is.
    pub fn category(&self) -> Category {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) if s.is_forbidden() => Category::Forbidden,
                kube::Error::Api(s) if s.code == 409 => Category::Conflict,
                kube::Error::Api(s) if s.code == 422 || s.code == 400 => Category::Invalid,
                _ => Category::Kube,
            },
            Error::Foreign { .. } => Category::Conflict,
            Error::Tls(_) => Category::Tls,
            Error::NoNamespace(_) => Category::Invalid,
        }
    }

    /// Whether retrying cannot help until the spec (or RBAC) changes. The reconciler still retries
    /// such errors, slowly, because the cause may lie outside the sandbox.
    pub fn is_permanent(&self) -> bool {
        matches!(self.category(), Category::Forbidden | Category::Invalid)
    }

    /// The API server's own message for a refused request, if this is one.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(&s.message),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The kinds of failure, for decisions (`Error::is_permanent`) and the metrics' bounded label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// RBAC or admission said no.
    Forbidden,
    /// Someone else's object, or a write that lost a race.
    Conflict,
    /// The API server refused the object as invalid.
    Invalid,
    /// Any other API failure (unreachable, timed out, ...).
    Kube,
    /// Certificate material could not be made or read.
    Tls,
}

impl Category {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Forbidden => "forbidden",
            Category::Conflict => "conflict",
            Category::Invalid => "invalid",
            Category::Kube => "kube",
            Category::Tls => "tls",
        }
    }
}

/// A client error in words a person reads: the API server's message for a refused request.
pub fn plain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        kube::Error::Api(s) => format!("the API server answered {} {}", s.code, s.reason),
        other => other.to_string(),
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": reason, "message": message
        }))
        .expect("status");
        Error::kube("apply", "Service", "a.b")(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn api_errors_read_as_the_api_servers_message() {
        let e = api_error(422, "Invalid", "Service \"a.b\" is invalid: metadata.name: Invalid value: \"a.b\"");
        assert_eq!(
            e.to_string(),
            "apply Service a.b: Service \"a.b\" is invalid: metadata.name: Invalid value: \"a.b\""
        );
        assert_eq!(e.category(), Category::Invalid);
        assert!(e.is_permanent());
        assert_eq!(
            api_error(500, "InternalError", "").to_string(),
            "apply Service a.b: the API server answered 500 InternalError"
        );
    }

    #[test]
    fn categories_are_bounded_labels() {
        assert_eq!(api_error(403, "Forbidden", "no").category(), Category::Forbidden);
        assert_eq!(api_error(409, "Conflict", "no").category(), Category::Conflict);
        assert!(!api_error(409, "Conflict", "no").is_permanent(), "a conflict is retried");
        assert_eq!(api_error(500, "InternalError", "no").category(), Category::Kube);
        assert_eq!(Error::NoNamespace("x".into()).category(), Category::Invalid);
    }
}
