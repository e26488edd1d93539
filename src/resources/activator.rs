//! The activator's part of a sandbox's Service. While the engine is idle-suspended (or starting
//! again after it), the sandbox's EndpointSlice names the activator's pods, on a port that is the
//! sandbox's alone: the activator tells sandboxes apart by the port a connection arrives on, which
//! works for clients that dial the Service's DNS name and its ClusterIP alike (kube-proxy rewrites
//! the destination, and nothing else of the connection says which Service it was for). A
//! NetworkPolicy in the operator's namespace admits to that port exactly the peers the engine's own
//! policy admits to 2376: a client that could not reach the engine cannot wake it either.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::endpoints::EnginePod;
use super::{DOCKER_TLS_PORT_NAME, Names, label, meta};
use crate::config::Ports;
use crate::crd::{DockerSandbox, SuspendCause};
use crate::plan::NetworkPlan;
use crate::plan::lifecycle::Run;
use crate::resources::secret::{SANDBOX_NAMESPACE_LABEL, SANDBOX_UID_LABEL};

/// Label on a sandbox's EndpointSlice while it names the activator: `activator`.
pub const ROUTE_LABEL: &str = "dockersandbox.dev/route";
/// The value of `ROUTE_LABEL` for the activator.
pub const TO_ACTIVATOR: &str = "activator";
/// `app.kubernetes.io/component` of the activator's pods (the chart's).
pub const COMPONENT: &str = "activator";
/// `app.kubernetes.io/component` of the NetworkPolicies that admit to a sandbox's activator port.
pub const POLICY_COMPONENT: &str = "activator-ingress";
/// Label on such a policy: its port (the caches keep labels, not the spec, of objects no sandbox owns).
pub const PORT_LABEL: &str = "dockersandbox.dev/activator-port";

/// Where the sandbox's Service sends connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// To the engine pod (none while it has no address: connections are refused at once).
    Engine(Option<EnginePod>),
    /// To the activator's pods, on the sandbox's own port.
    Activator {
        /// The activator pods' addresses (ready ones).
        addresses: Vec<String>,
        /// The sandbox's port on them.
        port: u16,
    },
}

/// Whether connections to the sandbox wait at the activator rather than go to the engine pod:
/// while the engine is idle-suspended, and while an engine that may idle is not ready (it is
/// waking, or starting). An engine stopped by `spec.suspend` or by expiry is never woken by a
/// connection: its Service has no endpoint, and clients are refused at once.
pub fn holds(run: Run, idles: bool, engine: Option<&EnginePod>) -> bool {
    if engine.is_some_and(|e| e.ready) {
        return false;
    }
    match run {
        Run::Suspend(SuspendCause::Idle) => true,
        Run::Suspend(_) | Run::Delete => false,
        Run::Engine => idles,
    }
}

/// The port for `uid` in `ports`: the one it has (`current`) while it is in the range and no other
/// sandbox has it, else the first free one from a place its uid decides (so that sandboxes routed
/// together do not all probe from the start). `None` when every port is taken.
pub fn pick_port(uid: &str, current: Option<u16>, ports: Ports, taken: impl Fn(u16) -> bool) -> Option<u16> {
    let in_range = |p: u16| (ports.first..=ports.last).contains(&p);
    if let Some(p) = current.filter(|p| in_range(*p) && !taken(*p)) {
        return Some(p);
    }
    let size = u32::from(ports.last - ports.first) + 1;
    let start = uid.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % size;
    (0..size).map(|i| ports.first + ((start + i) % size) as u16).find(|p| !taken(*p))
}

/// The port an EndpointSlice routes to the activator, if it does.
pub fn routed_port(slice: &EndpointSlice) -> Option<u16> {
    if slice.labels().get(ROUTE_LABEL).map(String::as_str) != Some(TO_ACTIVATOR) {
        return None;
    }
    let port = slice.ports.as_ref()?.first()?.port?;
    u16::try_from(port).ok()
}

/// The port a sandbox's activator policy admits to, read from its labels (the caches keep no spec
/// of an object without an owner); `None` for any other policy.
pub fn policy_port(policy: &NetworkPolicy) -> Option<u16> {
    let labels = policy.labels();
    if labels.get(label::COMPONENT).map(String::as_str) != Some(POLICY_COMPONENT) {
        return None;
    }
    labels.get(PORT_LABEL)?.parse().ok()
}

/// `slice` (the sandbox's, as `endpoints::build` makes it for the engine) turned to the activator.
pub fn to_activator(mut slice: EndpointSlice, addresses: &[String], port: u16) -> EndpointSlice {
    slice.metadata.labels.get_or_insert_with(Default::default).insert(ROUTE_LABEL.into(), TO_ACTIVATOR.into());
    let ipv6 = addresses.iter().any(|a| a.contains(':'));
    slice.address_type = if ipv6 { "IPv6" } else { "IPv4" }.into();
    let ready = EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) };
    slice.endpoints = Some(
        addresses
            .iter()
            .map(|a| Endpoint { addresses: vec![a.clone()], conditions: Some(ready.clone()), ..Endpoint::default() })
            .collect(),
    );
    slice.ports = Some(vec![EndpointPort {
        name: Some(DOCKER_TLS_PORT_NAME.into()),
        port: Some(i32::from(port)),
        protocol: Some("TCP".into()),
        ..EndpointPort::default()
    }]);
    slice
}

/// Name of the policy for `dsb`'s activator port, in the operator's namespace (by uid: one
/// sandbox's policy can never be taken for another's of the same name).
pub fn policy_name(dsb: &DockerSandbox) -> String {
    format!("activator-{}", dsb.uid().unwrap_or_default())
}

/// The NetworkPolicy in `namespace` (the operator's) that admits to `port` of the activator pods
/// the peers the engine's policy admits to 2376 (`network`): the sandbox's namespace, the
/// operator's, and the class's and the sandbox's `allowFrom` peers, each pinned to the namespace
/// it meant (a peer with a pod selector alone meant pods in the sandbox's namespace).
pub fn policy(dsb: &DockerSandbox, network: &NetworkPlan, port: u16, namespace: &str) -> NetworkPolicy {
    let names = Names::of(dsb);
    let mut metadata = meta(dsb, &policy_name(dsb), POLICY_COMPONENT, false);
    metadata.namespace = Some(namespace.to_string());
    let labels = metadata.labels.get_or_insert_with(Default::default);
    labels.insert(SANDBOX_NAMESPACE_LABEL.into(), names.namespace.clone());
    labels.insert(SANDBOX_UID_LABEL.into(), dsb.uid().unwrap_or_default());
    labels.insert(PORT_LABEL.into(), port.to_string());
    let in_namespace = |ns: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())])),
        ..LabelSelector::default()
    };
    let mut from =
        vec![NetworkPolicyPeer { namespace_selector: Some(in_namespace(&names.namespace)), ..Default::default() }];
    if let Some(ns) = &network.operator_namespace {
        from.push(NetworkPolicyPeer { namespace_selector: Some(in_namespace(ns)), ..Default::default() });
    }
    from.extend(network.allow_from.iter().cloned().map(|mut p| {
        if p.ip_block.is_none() && p.namespace_selector.is_none() {
            p.namespace_selector = Some(in_namespace(&names.namespace));
        }
        p
    }));
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(label::COMPONENT.to_string(), COMPONENT.to_string())])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![k8s_openapi::api::networking::v1::NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
                from: Some(from),
            }]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::endpoints;
    use crate::resources::testing::minimal;

    fn pod(ready: bool) -> EnginePod {
        EnginePod { ip: "10.0.0.9".into(), uid: Some("p".into()), ready }
    }

    #[test]
    fn connections_wait_only_for_an_engine_that_a_connection_may_wake() {
        let idle = Run::Suspend(SuspendCause::Idle);
        assert!(holds(idle, true, None));
        assert!(holds(idle, true, Some(&pod(false))), "stopping");
        assert!(!holds(Run::Suspend(SuspendCause::Spec), true, None), "spec.suspend refuses at once");
        assert!(!holds(Run::Suspend(SuspendCause::Expiry), true, None), "so does expiry");
        assert!(!holds(Run::Delete, true, None));
        assert!(holds(Run::Engine, true, Some(&pod(false))), "waking: held until the engine is ready");
        assert!(!holds(Run::Engine, true, Some(&pod(true))), "ready: straight to the engine");
        assert!(!holds(Run::Engine, false, None), "an engine that never idles is never held for");
    }

    #[test]
    fn a_sandbox_keeps_its_port_and_others_get_free_ones() {
        let ports = Ports { first: 20000, last: 20003 };
        assert_eq!(pick_port("u", Some(20002), ports, |_| false), Some(20002));
        assert_ne!(pick_port("u", Some(20002), ports, |p| p == 20002), Some(20002), "taken meanwhile");
        assert_ne!(pick_port("u", Some(30000), ports, |_| false), Some(30000), "out of a range that moved");
        let all_but_one = |p: u16| p != 20001;
        assert_eq!(pick_port("any", None, ports, all_but_one), Some(20001));
        assert_eq!(pick_port("any", None, ports, |_| true), None, "none free");
        let starts: std::collections::HashSet<_> =
            (0..50).filter_map(|i| pick_port(&format!("uid-{i}"), None, ports, |_| false)).collect();
        assert!(starts.len() > 1, "uids spread over the range");
    }

    #[test]
    fn the_slice_names_the_activator_on_the_sandboxs_port() {
        let dsb = minimal();
        let slice =
            to_activator(endpoints::build(&dsb, Some(&pod(true))), &["10.1.0.4".into(), "10.1.0.5".into()], 20007);
        assert_eq!(routed_port(&slice), Some(20007));
        let eps = slice.endpoints.clone().unwrap_or_default();
        assert_eq!(eps.iter().map(|e| e.addresses[0].as_str()).collect::<Vec<_>>(), ["10.1.0.4", "10.1.0.5"]);
        assert!(eps.iter().all(|e| e.target_ref.is_none()), "no engine pod named");
        let port = &slice.ports.as_ref().expect("ports")[0];
        assert_eq!(port.name.as_deref(), Some(DOCKER_TLS_PORT_NAME), "matched to the Service's port by name");
        assert_eq!(routed_port(&endpoints::build(&dsb, Some(&pod(true)))), None, "the engine's slice");
    }

    #[test]
    fn the_activator_port_admits_the_engines_peers_in_their_namespaces() {
        let dsb = minimal();
        let team = LabelSelector {
            match_labels: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
            ..LabelSelector::default()
        };
        let network = NetworkPlan {
            allow_from: vec![
                NetworkPolicyPeer { pod_selector: Some(team.clone()), ..Default::default() },
                NetworkPolicyPeer { namespace_selector: Some(team.clone()), ..Default::default() },
            ],
            operator_namespace: Some("dsb-system".into()),
            egress_deny: vec![],
            egress_allow: None,
            allow_dns: true,
        };
        let p = policy(&dsb, &network, 20007, "dsb-system");
        assert_eq!(p.metadata.namespace.as_deref(), Some("dsb-system"));
        assert_eq!(p.labels().get(PORT_LABEL).map(String::as_str), Some("20007"), "the port, where the caches see it");
        assert_eq!(policy_port(&p), Some(20007));
        assert!(p.metadata.owner_references.is_none(), "owners cannot cross namespaces");
        let spec = p.spec.expect("spec");
        let rule = &spec.ingress.expect("ingress")[0];
        assert_eq!(rule.ports.as_ref().expect("ports")[0].port, Some(IntOrString::Int(20007)));
        let from = rule.from.clone().expect("from");
        let ns_of = |p: &NetworkPolicyPeer| {
            p.namespace_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default()
        };
        let sandbox_ns = dsb.namespace().unwrap_or_default();
        assert_eq!(ns_of(&from[0])["kubernetes.io/metadata.name"], sandbox_ns, "the sandbox's namespace");
        assert_eq!(ns_of(&from[1])["kubernetes.io/metadata.name"], "dsb-system");
        assert_eq!(ns_of(&from[2])["kubernetes.io/metadata.name"], sandbox_ns, "a pod selector meant its namespace");
        assert_eq!(from[2].pod_selector, Some(team.clone()));
        assert_eq!(from[3].namespace_selector, Some(team), "a namespace selector stays");
        assert_eq!(from.len(), 4);
    }
}
