//! The engine's NetworkPolicy: who may connect to port 2376 (the sandbox's namespace, the
//! operator's, and the peers the class and the sandbox add), and where the engine, and so every
//! nested container, may connect (everywhere but what the class denies, by default link-local).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DOCKER_TLS_PORT, Names, meta, selector};
use crate::crd::{DockerSandbox, NetworkStatus};
use crate::plan::{NetworkPlan, Plan};

/// The NetworkPolicy for `dsb`'s engine pod (named like the pod).
pub fn build(dsb: &DockerSandbox, plan: &Plan) -> NetworkPolicy {
    let names = Names::of(dsb);
    let n = &plan.network;
    NetworkPolicy {
        metadata: meta(dsb, &names.pod, "engine", true),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector(dsb)), ..LabelSelector::default() }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![port(DOCKER_TLS_PORT, "TCP")]),
                from: Some(ingress_peers(n)),
            }]),
            egress: Some(egress(n)),
        }),
    }
}

/// The policy in words, for status (`kubectl describe dsb`).
pub fn describe(dsb: &DockerSandbox, plan: &Plan) -> NetworkStatus {
    let names = Names::of(dsb);
    let n = &plan.network;
    let mut who = vec![format!("pods in namespace {}", names.namespace)];
    if let Some(ns) = n.operator_namespace.as_deref().filter(|ns| *ns != names.namespace) {
        who.push(format!("the operator's namespace {ns}"));
    }
    who.extend(n.allow_from.iter().map(peer_words));
    let denied = if n.egress_deny.is_empty() { String::new() } else { format!(" except {}", n.egress_deny.join(", ")) };
    let egress = match &n.egress_allow {
        None => format!("everywhere{denied}"),
        Some(allow) => {
            let dns =
                if n.allow_dns { " and the cluster DNS (port 53 of k8s-app=kube-dns in kube-system)" } else { "" };
            let only = if allow.is_empty() { "nowhere".to_string() } else { allow.join(", ") };
            format!("only {only}{denied}{dns}")
        }
    };
    NetworkStatus { policy: names.pod, ingress: format!("port 2376 from {}", who.join("; ")), egress }
}

fn ingress_peers(n: &NetworkPlan) -> Vec<NetworkPolicyPeer> {
    // An empty podSelector alone means every pod of the policy's own namespace.
    let mut peers = vec![NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() }];
    if let Some(ns) = &n.operator_namespace {
        peers.push(NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.clone())])),
                ..LabelSelector::default()
            }),
            ..Default::default()
        });
    }
    peers.extend(n.allow_from.iter().cloned());
    peers
}

fn egress(n: &NetworkPlan) -> Vec<NetworkPolicyEgressRule> {
    let within = |cidr: &str| -> Option<Vec<String>> {
        let except: Vec<String> = n.egress_deny.iter().filter(|d| strictly_inside(d, cidr)).cloned().collect();
        (!except.is_empty()).then_some(except)
    };
    let block = |cidr: &str| NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.to_string(), except: within(cidr) }),
        ..Default::default()
    };
    match &n.egress_allow {
        None => vec![NetworkPolicyEgressRule { to: Some(vec![block("0.0.0.0/0"), block("::/0")]), ports: None }],
        Some(allow) => {
            // A denied CIDR that covers an allowed one wins: that entry is left out.
            let allowed: Vec<&String> =
                allow.iter().filter(|a| !n.egress_deny.iter().any(|d| d == *a || strictly_inside(a, d))).collect();
            let mut rules = Vec::new();
            if !allowed.is_empty() {
                rules.push(NetworkPolicyEgressRule {
                    to: Some(allowed.iter().map(|a| block(a)).collect()),
                    ports: None,
                });
            }
            if n.allow_dns {
                rules.push(NetworkPolicyEgressRule {
                    to: Some(vec![cluster_dns()]),
                    ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
                });
            }
            rules
        }
    }
}

/// The cluster's DNS pods: `k8s-app=kube-dns` in `kube-system` (CoreDNS in kubeadm, kind and most
/// distributions). A DNS server anywhere else is not reachable through the allow-list's exception.
fn cluster_dns() -> NetworkPolicyPeer {
    let labels = |k: &str, v: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
        ..LabelSelector::default()
    };
    NetworkPolicyPeer {
        namespace_selector: Some(labels("kubernetes.io/metadata.name", "kube-system")),
        pod_selector: Some(labels("k8s-app", "kube-dns")),
        ..Default::default()
    }
}

fn port(number: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(number)), protocol: Some(protocol.into()), end_port: None }
}

fn peer_words(p: &NetworkPolicyPeer) -> String {
    let sel = |s: &LabelSelector| {
        let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        parts.extend(s.match_expressions.iter().flatten().map(|e| format!("{} {}", e.key, e.operator)));
        if parts.is_empty() { "any".to_string() } else { parts.join(",") }
    };
    match (&p.namespace_selector, &p.pod_selector, &p.ip_block) {
        (_, _, Some(b)) => match &b.except {
            Some(e) if !e.is_empty() => format!("{} except {}", b.cidr, e.join(", ")),
            _ => b.cidr.clone(),
        },
        (Some(ns), Some(pods), None) => format!("pods {} in namespaces {}", sel(pods), sel(ns)),
        (Some(ns), None, None) => format!("namespaces {}", sel(ns)),
        (None, Some(pods), None) => format!("pods {} in namespace of the sandbox", sel(pods)),
        (None, None, None) => "nothing".into(),
    }
}

/// Whether CIDR `inner` lies inside `outer` and is smaller (what NetworkPolicy accepts in `except`).
pub fn strictly_inside(inner: &str, outer: &str) -> bool {
    match (parse(inner), parse(outer)) {
        (Some((i, ip)), Some((o, op))) => op < ip && same_prefix(i, o, op),
        _ => false,
    }
}

fn parse(cidr: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = cidr.split_once('/')?;
    Some((ip.parse().ok()?, prefix.parse().ok()?))
}

fn same_prefix(a: IpAddr, b: IpAddr, bits: u8) -> bool {
    let (a, b, width): (u128, u128, u32) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{minimal, plan};

    #[test]
    fn ingress_is_the_namespace_the_operator_and_the_added_peers_on_2376_only() {
        let dsb = minimal();
        let mut p = plan(&dsb);
        p.network.operator_namespace = Some("dockersandbox-system".into());
        p.network.allow_from = vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock { cidr: "203.0.113.0/24".into(), except: None }),
            ..Default::default()
        }];
        let np = build(&dsb, &p);
        assert_eq!(np.metadata.name.as_deref(), Some("web-engine"));
        assert!(np.metadata.owner_references.is_some_and(|o| o[0].uid == "0000-1111"));
        let spec = np.spec.expect("spec");
        assert_eq!(spec.pod_selector.expect("sel").match_labels, Some(selector(&dsb)));
        let rule = &spec.ingress.expect("ingress")[0];
        assert_eq!(rule.ports.as_ref().expect("ports")[0].port, Some(IntOrString::Int(2376)));
        let from = rule.from.as_ref().expect("from");
        assert_eq!(from.len(), 3);
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()), "own namespace");
        assert!(from[0].namespace_selector.is_none(), "only the own namespace, not all");
        let ns = from[1].namespace_selector.as_ref().and_then(|s| s.match_labels.clone()).expect("ns");
        assert_eq!(ns["kubernetes.io/metadata.name"], "dockersandbox-system");
        let words = describe(&dsb, &p);
        assert_eq!(
            words.ingress,
            "port 2376 from pods in namespace team-a; the operator's namespace dockersandbox-system; 203.0.113.0/24"
        );
    }

    #[test]
    fn default_egress_is_everywhere_but_link_local() {
        let dsb = minimal();
        let p = plan(&dsb);
        let deny = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "fd20:ce::254/128"];
        assert_eq!(p.network.egress_deny, deny, "the default without a class setting");
        let egress = build(&dsb, &p).spec.expect("spec").egress.expect("egress");
        assert_eq!(egress.len(), 1);
        let to = egress[0].to.as_ref().expect("to");
        let v4 = to[0].ip_block.as_ref().expect("v4");
        assert_eq!((v4.cidr.as_str(), v4.except.clone()), ("0.0.0.0/0", Some(vec!["169.254.0.0/16".to_string()])));
        let v6 = to[1].ip_block.as_ref().expect("v6");
        let v6_deny = deny[1..].iter().map(|d| d.to_string()).collect();
        assert_eq!((v6.cidr.as_str(), v6.except.clone()), ("::/0", Some(v6_deny)), "IPv6 link-local and metadata");
        assert_eq!(
            describe(&dsb, &p).egress,
            "everywhere except 169.254.0.0/16, fe80::/10, fd00:ec2::254/128, fd20:ce::254/128"
        );
    }

    #[test]
    fn an_allow_list_opens_only_its_cidrs_and_dns() {
        let dsb = minimal();
        let mut p = plan(&dsb);
        p.network.egress_allow = Some(vec!["10.20.0.0/16".into(), "169.254.169.254/32".into()]);
        p.network.egress_deny = vec!["10.20.5.0/24".into(), "169.254.0.0/16".into()];
        let egress = build(&dsb, &p).spec.expect("spec").egress.expect("egress");
        let to = egress[0].to.as_ref().expect("to");
        assert_eq!(to.len(), 1, "the metadata address is denied by a wider deny");
        let b = to[0].ip_block.as_ref().expect("block");
        assert_eq!((b.cidr.as_str(), b.except.clone()), ("10.20.0.0/16", Some(vec!["10.20.5.0/24".to_string()])));
        assert_eq!(egress[1].ports.as_ref().map(Vec::len), Some(2), "DNS over UDP and TCP");
        let dns = &egress[1].to.as_ref().expect("only to the cluster DNS")[0];
        let pods = dns.pod_selector.as_ref().and_then(|s| s.match_labels.clone()).expect("pods");
        let ns = dns.namespace_selector.as_ref().and_then(|s| s.match_labels.clone()).expect("namespace");
        assert_eq!((pods["k8s-app"].as_str(), ns["kubernetes.io/metadata.name"].as_str()), ("kube-dns", "kube-system"));
        p.network.allow_dns = false;
        p.network.egress_allow = Some(vec![]);
        let egress = build(&dsb, &p).spec.expect("spec").egress.expect("egress");
        assert!(egress.is_empty(), "an empty allow-list without DNS denies all egress");
        assert_eq!(describe(&dsb, &p).egress, "only nowhere except 10.20.5.0/24, 169.254.0.0/16");
    }

    #[test]
    fn cidr_containment() {
        assert!(strictly_inside("169.254.0.0/16", "0.0.0.0/0"));
        assert!(strictly_inside("10.20.5.0/24", "10.20.0.0/16"));
        assert!(!strictly_inside("10.20.0.0/16", "10.20.0.0/16"), "equal is not inside");
        assert!(!strictly_inside("10.21.0.0/24", "10.20.0.0/16"));
        assert!(!strictly_inside("fe80::/10", "0.0.0.0/0"));
        assert!(strictly_inside("fe80::/10", "::/0"));
        assert!(!strictly_inside("nonsense", "::/0"));
    }
}
