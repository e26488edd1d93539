//! The EndpointSlice behind the sandbox's Service. The Service selects no pods: a label anyone who
//! may create pods in the namespace can set must never make their pod an endpoint of the engine.
//! The operator names the one engine pod it owns, by address, here.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

use super::{DOCKER_TLS_PORT, DOCKER_TLS_PORT_NAME, Names, meta};
use crate::crd::DockerSandbox;

/// The label that ties an EndpointSlice to its Service (kube-proxy routes by it).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label that says who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This operator, as the manager of its EndpointSlices.
pub const MANAGED_BY: &str = "dockersandbox.dev-operator";
/// Kubernetes' EndpointSlice controller, which made the slices of Services that had a selector.
pub const CONTROLLER_MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Kubernetes' mirroring controller, which copies a selectorless Service's Endpoints object (the
/// one its Endpoints controller made while the Service had a selector) into slices.
pub const MIRRORING_MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";

/// The engine pod as an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnginePod {
    /// `status.podIP`.
    pub ip: String,
    /// Its UID.
    pub uid: Option<String>,
    /// Whether its Ready condition is True.
    pub ready: bool,
}

/// The desired EndpointSlice of `dsb`'s Service: the engine pod when it has an address, else none.
pub fn build(dsb: &DockerSandbox, engine: Option<&EnginePod>) -> EndpointSlice {
    let names = Names::of(dsb);
    let mut metadata = meta(dsb, &names.service, "endpoint", true);
    let labels = metadata.labels.get_or_insert_with(Default::default);
    labels.insert(SERVICE_NAME_LABEL.into(), names.service.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let ipv6 = engine.is_some_and(|e| e.ip.contains(':'));
    let endpoints: Vec<Endpoint> = engine
        .map(|e| Endpoint {
            addresses: vec![e.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(e.ready),
                serving: Some(e.ready),
                terminating: Some(false),
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(names.pod.clone()),
                namespace: Some(names.namespace.clone()),
                uid: e.uid.clone(),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        })
        .into_iter()
        .collect();
    EndpointSlice {
        metadata,
        address_type: if ipv6 { "IPv6" } else { "IPv4" }.into(),
        endpoints: Some(endpoints),
        ports: Some(vec![EndpointPort {
            name: Some(DOCKER_TLS_PORT_NAME.into()),
            port: Some(DOCKER_TLS_PORT),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

/// Whether `slice` is one Kubernetes made for the Service `service` from its selector: by the
/// EndpointSlice controller (which leaves them as they were once the selector is gone, stale), or
/// mirrored from the Endpoints object its Endpoints controller made (which it leaves too, and which
/// the mirroring controller copies into slices as soon as the Service has no selector).
pub fn made_by_kubernetes_for(slice: &EndpointSlice, service: &str) -> Option<&'static str> {
    let labels = slice.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if label(SERVICE_NAME_LABEL) != Some(service) {
        return None;
    }
    match label(MANAGED_BY_LABEL) {
        Some(CONTROLLER_MANAGED_BY) => Some(CONTROLLER_MANAGED_BY),
        // mirrored from an Endpoints object that Kubernetes' own controller made (its labels are copied)
        Some(MIRRORING_MANAGED_BY) if label(ENDPOINTS_MANAGED_BY_LABEL) == Some(ENDPOINTS_CONTROLLER) => {
            Some(MIRRORING_MANAGED_BY)
        }
        _ => None,
    }
}

/// The start of every name Kubernetes gives the slices it makes for the Service `service`: both
/// controllers name them by `generateName: SERVICE-`, of which the API server keeps at most 58
/// characters before the 5 random ones.
pub fn generated_name_prefix(service: &str) -> String {
    format!("{service}-").chars().take(58).collect()
}

/// The label Kubernetes' Endpoints controller puts on the Endpoints objects it makes.
pub const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
/// Its value there.
pub const ENDPOINTS_CONTROLLER: &str = "endpoint-controller";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::minimal;

    #[test]
    fn kubernetes_slice_names_start_with_the_service_name_cut_to_58_characters() {
        assert_eq!(generated_name_prefix("web"), "web-");
        let long = "a".repeat(63);
        assert_eq!(generated_name_prefix(&long), "a".repeat(58));
        assert!(format!("{}xk2p9", &long[..58]).starts_with(&generated_name_prefix(&long)));
    }

    #[test]
    fn names_the_engine_pod_by_address_for_the_service() {
        let dsb = minimal();
        let pod = EnginePod { ip: "10.244.0.7".into(), uid: Some("p1".into()), ready: true };
        let s = build(&dsb, Some(&pod));
        assert_eq!(s.metadata.name.as_deref(), Some("web"));
        let labels = s.metadata.labels.clone().expect("labels");
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(s.metadata.owner_references.expect("owner")[0].kind, "DockerSandbox");
        assert_eq!(s.address_type, "IPv4");
        let endpoints = s.endpoints.clone().unwrap_or_default();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].addresses, ["10.244.0.7"]);
        assert_eq!(endpoints[0].conditions.as_ref().and_then(|c| c.ready), Some(true));
        assert_eq!(endpoints[0].target_ref.as_ref().and_then(|r| r.name.as_deref()), Some("web-engine"));
        let port = &s.ports.expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("docker-tls"), Some(2376)));
        // no pod: no endpoint (clients are refused instead of reaching something else)
        assert_eq!(build(&dsb, None).endpoints, Some(vec![]));
        let v6 = EnginePod { ip: "fd00::7".into(), uid: None, ready: false };
        assert_eq!(build(&dsb, Some(&v6)).address_type, "IPv6");
    }

    #[test]
    fn tells_the_controllers_slices_of_the_service_from_others() {
        let dsb = minimal();
        let mut theirs = build(&dsb, None);
        theirs.metadata.labels.as_mut().expect("labels").insert(MANAGED_BY_LABEL.into(), CONTROLLER_MANAGED_BY.into());
        assert_eq!(made_by_kubernetes_for(&theirs, "web"), Some(CONTROLLER_MANAGED_BY));
        assert_eq!(made_by_kubernetes_for(&theirs, "other"), None);
        assert_eq!(made_by_kubernetes_for(&build(&dsb, None), "web"), None, "ours");
        let labels = theirs.metadata.labels.as_mut().expect("labels");
        labels.insert(MANAGED_BY_LABEL.into(), MIRRORING_MANAGED_BY.into());
        assert_eq!(made_by_kubernetes_for(&theirs, "web"), None, "mirrored from an Endpoints someone else made");
        let labels = theirs.metadata.labels.as_mut().expect("labels");
        labels.insert(ENDPOINTS_MANAGED_BY_LABEL.into(), ENDPOINTS_CONTROLLER.into());
        assert_eq!(made_by_kubernetes_for(&theirs, "web"), Some(MIRRORING_MANAGED_BY));
    }
}
