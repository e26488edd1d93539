//! The Service in front of dockerd's TLS port.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DOCKER_TLS_PORT, DOCKER_TLS_PORT_NAME, Names, meta};
use crate::crd::{DockerSandbox, ServiceType};
use crate::plan::Plan;

/// The desired Service of `dsb` (identity from `dsb`, everything else from `plan`). It has no
/// selector: its EndpointSlice (`endpoints`) names the engine pod, which no other pod can become by
/// copying its labels.
pub fn build(dsb: &DockerSandbox, plan: &Plan) -> Service {
    let names = Names::of(dsb);
    let mut metadata = meta(dsb, &names.service, "endpoint", true);
    if !plan.service.annotations.is_empty() {
        metadata.annotations = Some(plan.service.annotations.clone());
    }
    let type_ = match plan.service.kind {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.to_string()),
            ports: Some(vec![ServicePort {
                name: Some(DOCKER_TLS_PORT_NAME.to_string()),
                port: DOCKER_TLS_PORT,
                target_port: Some(IntOrString::String(DOCKER_TLS_PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Addresses clients may dial that the server certificate must cover: the ClusterIP and any
/// load balancer ingress addresses or host names.
pub fn addresses(svc: &Service) -> Vec<String> {
    let mut out: Vec<String> = svc.spec.iter().flat_map(|s| s.cluster_ips.clone().unwrap_or_default()).collect();
    if let Some(ingress) = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref())
    {
        for i in ingress {
            out.extend(i.ip.clone());
            out.extend(i.hostname.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{minimal, plan, sandbox};

    #[test]
    fn exposes_2376_by_name_with_owner_and_labels() {
        let dsb = minimal();
        let svc = build(&dsb, &plan(&dsb));
        assert_eq!(svc.metadata.name.as_deref(), Some("web"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(port.port, 2376);
        assert_eq!(port.target_port, Some(IntOrString::String("docker-tls".into())));
        assert_eq!(spec.selector, None, "no pod becomes an endpoint by its labels");
        assert_eq!(svc.metadata.owner_references.expect("owner")[0].kind, "DockerSandbox");
    }

    #[test]
    fn load_balancer_with_annotations() {
        let dsb = sandbox(
            "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: lb}\nspec:\n  service:\n    type: LoadBalancer\n    annotations: {a: b}\n",
        );
        let svc = build(&dsb, &plan(&dsb));
        assert_eq!(svc.spec.expect("spec").type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(svc.metadata.annotations.expect("annotations")["a"], "b");
    }
}
