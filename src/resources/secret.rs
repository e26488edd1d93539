//! Secrets holding the sandbox's TLS material. The CA key lives only in the CA key secret, in the
//! operator's namespace (tenants cannot read it there); the sandbox's namespace has the CA
//! certificate alone (`NAME-ca`), and the engine pod mounts only its server certificate and key.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Names, meta};
use crate::crd::DockerSandbox;
use crate::tls::Pem;

/// Key of the CA certificate in every secret (docker's DOCKER_CERT_PATH layout).
pub const CA_CERT: &str = "ca.pem";
/// Key of the CA private key, in the CA secret only.
pub const CA_KEY: &str = "ca-key.pem";
/// Key of a leaf certificate.
pub const CERT: &str = "cert.pem";
/// Key of a leaf private key.
pub const KEY: &str = "key.pem";

fn secret(dsb: &DockerSandbox, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(dsb, name, "tls", true),
        type_: Some("Opaque".to_string()),
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Secret::default()
    }
}

/// Annotation on the CA secret: the `spec.credentials.generation` the CA was issued for.
pub const GENERATION_ANNOTATION: &str = "dockersandbox.dev/credentials-generation";

/// The public CA secret `NAME-ca` in the sandbox's namespace: the CA certificate alone, marked with
/// the credentials generation it belongs to.
pub fn ca(dsb: &DockerSandbox, ca_cert: &str, generation: i64) -> Secret {
    let mut s = secret(dsb, &Names::of(dsb).ca_secret, &[(CA_CERT, ca_cert)]);
    s.metadata.annotations = Some([(GENERATION_ANNOTATION.to_string(), generation.to_string())].into());
    s
}

/// Label on a CA key secret: the namespace of its sandbox.
pub const SANDBOX_NAMESPACE_LABEL: &str = "dockersandbox.dev/sandbox-namespace";
/// Label on a CA key secret: the uid of its sandbox (the secret goes when no sandbox has it).
pub const SANDBOX_UID_LABEL: &str = "dockersandbox.dev/sandbox-uid";
/// `app.kubernetes.io/component` of CA key secrets.
pub const CA_KEY_COMPONENT: &str = "ca-key";

/// The CA key secret in `namespace` (the operator's): certificate and key, with labels naming its
/// sandbox, no owner (owners cannot cross namespaces; the operator deletes it when no sandbox has
/// its uid), marked with the credentials generation.
pub fn ca_key(dsb: &DockerSandbox, ca: &Pem, generation: i64, namespace: &str) -> Secret {
    let names = Names::of(dsb);
    let mut s = secret(dsb, &names.ca_key_secret, &[(CA_CERT, &ca.cert), (CA_KEY, &ca.key)]);
    s.metadata = meta(dsb, &names.ca_key_secret, CA_KEY_COMPONENT, false);
    s.metadata.namespace = Some(namespace.to_string());
    let labels = s.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(SANDBOX_NAMESPACE_LABEL.into(), names.namespace.clone());
    labels.insert(SANDBOX_UID_LABEL.into(), dsb.metadata.uid.clone().unwrap_or_default());
    s.metadata.annotations = Some([(GENERATION_ANNOTATION.to_string(), generation.to_string())].into());
    s
}

/// The credentials generation a CA secret was issued for (0 when unmarked, as before revocation existed).
pub fn generation(secret: &Secret) -> i64 {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GENERATION_ANNOTATION))
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// The server secret mounted into the engine pod at /certs/server.
pub fn server(dsb: &DockerSandbox, ca_cert: &str, leaf: &Pem) -> Secret {
    secret(dsb, &Names::of(dsb).server_secret, &[(CA_CERT, ca_cert), (CERT, &leaf.cert), (KEY, &leaf.key)])
}

/// The client secret for the tenant, usable as DOCKER_CERT_PATH.
pub fn client(dsb: &DockerSandbox, ca_cert: &str, leaf: &Pem) -> Secret {
    secret(dsb, &Names::of(dsb).client_secret, &[(CA_CERT, ca_cert), (CERT, &leaf.cert), (KEY, &leaf.key)])
}

/// A text entry of a secret read from the API, if present and UTF-8.
pub fn text(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// A leaf (cert + key) stored in a secret.
pub fn leaf(secret: &Secret) -> Option<Pem> {
    Some(Pem { cert: text(secret, CERT)?, key: text(secret, KEY)? })
}

/// The CA (cert + key) stored in a CA key secret (or, before it moved, in `NAME-ca`).
pub fn ca_pem(secret: &Secret) -> Option<Pem> {
    Some(Pem { cert: text(secret, CA_CERT)?, key: text(secret, CA_KEY)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::minimal;

    fn keys(secret: &Secret) -> Vec<String> {
        secret.data.as_ref().map(|d| d.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn ca_key_only_in_the_operators_namespace() {
        let dsb = minimal();
        let pem = Pem { cert: "C".into(), key: "K".into() };
        assert_eq!(keys(&ca(&dsb, "C", 0)), vec!["ca.pem"], "the tenant's NAME-ca has no key");
        assert_eq!(generation(&ca(&dsb, "C", 3)), 3);
        let key = ca_key(&dsb, &pem, 3, "dockersandbox-system");
        assert_eq!(keys(&key), vec!["ca-key.pem", "ca.pem"]);
        assert_eq!(key.metadata.namespace.as_deref(), Some("dockersandbox-system"));
        assert_eq!(key.metadata.name.as_deref(), Some("ca-team-a-0000-1111"));
        assert!(key.metadata.owner_references.is_none(), "owners cannot cross namespaces");
        let labels = key.metadata.labels.clone().expect("labels");
        assert_eq!(
            (labels[SANDBOX_NAMESPACE_LABEL].as_str(), labels[SANDBOX_UID_LABEL].as_str()),
            ("team-a", "0000-1111")
        );
        assert_eq!(generation(&key), 3);
        assert_eq!(ca_pem(&key), Some(pem.clone()));
        assert_eq!(keys(&server(&dsb, "C", &pem)), vec!["ca.pem", "cert.pem", "key.pem"]);
        let c = client(&dsb, "C", &pem);
        assert_eq!(generation(&c), 0, "unmarked");
        assert_eq!(c.metadata.name.as_deref(), Some("web-client"));
        assert_eq!(keys(&c), vec!["ca.pem", "cert.pem", "key.pem"]);
        assert_eq!(leaf(&c), Some(pem));
    }
}
