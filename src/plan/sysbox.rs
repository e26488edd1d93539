//! Pure: how a sysbox engine pod gets its user namespace. sysbox-deploy-k8s sets nodes up in one of
//! two ways, and each runs only its own pod shape:
//! - containerd (≥ 2.0.5, Kubernetes ≥ 1.30 pod user namespaces): `hostUsers: false`;
//! - CRI-O (sysbox's own install guide): the annotation `io.kubernetes.cri-o.userns-mode` and no
//!   `hostUsers` (setting it makes sysbox pods fail there, nestybox/sysbox#987).
//!
//! Never both at once. `auto` decides from what the nodes the RuntimeClass schedules onto report.

use crate::config::SysboxUserNamespace;
use crate::crd::conditions::reason;
use crate::plan::Refusal;

/// The CRI-O annotation that gives a pod a user namespace.
pub const CRIO_USERNS_ANNOTATION: &str = "io.kubernetes.cri-o.userns-mode";
/// Its value: an automatically chosen range of 65536 ids, as sysbox's guide uses.
pub const CRIO_USERNS_MODE: &str = "auto:size=65536";

/// The pod shape that gives a sysbox pod its user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserNamespace {
    /// `hostUsers: false`.
    HostUsers,
    /// The CRI-O annotation.
    CrioAnnotation,
}

impl UserNamespace {
    /// The form as written in status and in the operator's setting.
    pub fn as_str(self) -> &'static str {
        match self {
            UserNamespace::HostUsers => "hostUsers",
            UserNamespace::CrioAnnotation => "crioAnnotation",
        }
    }
}

/// A node the sysbox RuntimeClass schedules onto, and its `status.nodeInfo.containerRuntimeVersion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRuntime {
    /// Node name.
    pub node: String,
    /// e.g. `containerd://2.1.9` or `cri-o://1.33.2`.
    pub runtime: String,
}

const SETTING: &str = "set the operator's sysboxUserNamespace (Helm value operator.sysboxUserNamespace, flag --sysbox-user-namespace) to hostUsers (containerd nodes) or crioAnnotation (CRI-O nodes)";

/// Picks the form, and says why; `nodes` is `None` when they were not looked up.
pub fn user_namespace(
    setting: SysboxUserNamespace,
    nodes: Option<&[NodeRuntime]>,
    runtime_class: &str,
) -> Result<(UserNamespace, String), Refusal> {
    let chosen =
        |form: UserNamespace| (form, format!("the operator's sysboxUserNamespace setting is {}", form.as_str()));
    match setting {
        SysboxUserNamespace::HostUsers => return Ok(chosen(UserNamespace::HostUsers)),
        SysboxUserNamespace::CrioAnnotation => return Ok(chosen(UserNamespace::CrioAnnotation)),
        SysboxUserNamespace::Auto => {}
    }
    let nodes = nodes.unwrap_or_default();
    let refuse =
        |message: String| Refusal { reason: reason::SYSBOX_USER_NAMESPACE_UNKNOWN, message, spec_error: false };
    if nodes.is_empty() {
        return Err(refuse(format!(
            "no node that RuntimeClass {runtime_class:?} schedules onto reports its container runtime, so the operator \
             cannot tell which user-namespace form sysbox needs there; label the sysbox nodes as the RuntimeClass's \
             scheduling.nodeSelector asks, or {SETTING}"
        )));
    }
    let forms: Vec<Option<UserNamespace>> = nodes.iter().map(|n| form_of(&n.runtime)).collect();
    let first = forms[0];
    if let Some(form) = first.filter(|_| forms.iter().all(|f| *f == first)) {
        let mut runtimes: Vec<&str> = nodes.iter().map(|n| n.runtime.as_str()).collect();
        runtimes.sort_unstable();
        runtimes.dedup();
        let kind = if form == UserNamespace::HostUsers { "containerd" } else { "CRI-O" };
        let why = format!(
            "the {} node(s) RuntimeClass {runtime_class:?} schedules onto run {kind} ({})",
            nodes.len(),
            runtimes.join(", ")
        );
        return Ok((form, why));
    }
    let listed: Vec<String> = nodes.iter().map(|n| format!("{}: {}", n.node, n.runtime)).collect();
    Err(refuse(format!(
        "the nodes RuntimeClass {runtime_class:?} schedules onto do not all run containerd or all run CRI-O ({}); \
         narrow the RuntimeClass's scheduling.nodeSelector to one kind of node, or {SETTING}",
        listed.join(", ")
    )))
}

fn form_of(runtime: &str) -> Option<UserNamespace> {
    if runtime.starts_with("containerd://") {
        Some(UserNamespace::HostUsers)
    } else if runtime.starts_with("cri-o://") {
        Some(UserNamespace::CrioAnnotation)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, &str)]) -> Vec<NodeRuntime> {
        list.iter().map(|(n, r)| NodeRuntime { node: n.to_string(), runtime: r.to_string() }).collect()
    }

    fn auto(list: &[(&str, &str)]) -> Result<(UserNamespace, String), Refusal> {
        user_namespace(SysboxUserNamespace::Auto, Some(&nodes(list)), "sysbox-runc")
    }

    #[test]
    fn containerd_nodes_get_host_users() {
        let (form, why) = auto(&[("a", "containerd://2.1.9"), ("b", "containerd://2.1.9")]).expect("decided");
        assert_eq!(form, UserNamespace::HostUsers);
        assert_eq!(
            why,
            "the 2 node(s) RuntimeClass \"sysbox-runc\" schedules onto run containerd (containerd://2.1.9)"
        );
    }

    #[test]
    fn cri_o_nodes_get_the_annotation() {
        let (form, why) = auto(&[("a", "cri-o://1.33.2"), ("b", "cri-o://1.32.0")]).expect("decided");
        assert_eq!(form, UserNamespace::CrioAnnotation);
        assert!(why.ends_with("run CRI-O (cri-o://1.32.0, cri-o://1.33.2)"), "{why}");
    }

    #[test]
    fn mixed_nodes_are_refused_naming_each_node_and_the_setting() {
        let r = auto(&[("a", "containerd://2.1.9"), ("b", "cri-o://1.33.2")]).expect_err("refused");
        assert_eq!(r.reason, "SysboxUserNamespaceUnknown");
        assert!(!r.spec_error);
        assert!(r.message.contains("a: containerd://2.1.9, b: cri-o://1.33.2"), "{}", r.message);
        assert!(r.message.contains("operator.sysboxUserNamespace"), "{}", r.message);
    }

    #[test]
    fn an_unknown_runtime_is_refused() {
        let r = auto(&[("a", "docker://20.10.0")]).expect_err("refused");
        assert!(r.message.contains("a: docker://20.10.0"), "{}", r.message);
    }

    #[test]
    fn no_node_is_refused_with_what_to_do() {
        let r = auto(&[]).expect_err("refused");
        assert!(r.message.contains("no node that RuntimeClass \"sysbox-runc\" schedules onto"), "{}", r.message);
        assert!(r.message.contains("scheduling.nodeSelector") && r.message.contains("hostUsers"), "{}", r.message);
        let r = user_namespace(SysboxUserNamespace::Auto, None, "sysbox-runc").expect_err("refused");
        assert_eq!(r.reason, "SysboxUserNamespaceUnknown");
    }

    #[test]
    fn an_explicit_setting_wins_over_the_nodes() {
        let cri = nodes(&[("a", "cri-o://1.33.2")]);
        let (form, why) = user_namespace(SysboxUserNamespace::HostUsers, Some(&cri), "sysbox-runc").expect("decided");
        assert_eq!(form, UserNamespace::HostUsers);
        assert_eq!(why, "the operator's sysboxUserNamespace setting is hostUsers");
        let (form, _) = user_namespace(SysboxUserNamespace::CrioAnnotation, None, "sysbox-runc").expect("decided");
        assert_eq!(form, UserNamespace::CrioAnnotation);
    }
}
