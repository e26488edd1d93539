//! The engine pod: dockerd with mutual TLS on 2376, a unix socket for probes, /var/lib/docker on
//! the sandbox's volume, and the isolation the plan chose.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction, PersistentVolumeClaimVolumeSource, Pod,
    PodSpec, Probe, ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest, Sha256};

use super::{DOCKER_TLS_PORT, DOCKER_TLS_PORT_NAME, Names, daemon_json, meta};
use crate::crd::{DockerSandbox, PullPolicy, SPEC_HASH_ANNOTATION};
use crate::plan::sysbox::{CRIO_USERNS_ANNOTATION, CRIO_USERNS_MODE};
use crate::plan::{Mode, Plan, UserNamespace};

/// Where the server certificate is mounted.
pub const CERT_DIR: &str = "/certs/server";
/// Seconds the pod gets to stop by default (the class's `lifecycle.stopGracePeriodSeconds`): above
/// dockerd's shutdown-timeout (30 s) so nested containers stop cleanly.
pub const GRACE_SECONDS: i64 = 60;

/// Starts dockerd the way docker:dind does, with the operator's certificates instead of generated
/// ones. The MTU defaults to the pod interface's (the default route's device), and applies to the
/// default bridge and to every network users create later. An MTU above the pod's own would drop
/// nested containers' large packets: the engine refuses to start and says why (its termination
/// message, which the operator puts into the sandbox's condition).
pub const START_SCRIPT: &str = r#"set -eu
dev="$(awk '$2 == "00000000" { print $1; exit }' /proc/net/route 2>/dev/null || true)"
pod_mtu="$(cat "/sys/class/net/${dev:-eth0}/mtu" 2>/dev/null || echo 1500)"
mtu="${DOCKERSANDBOX_MTU:-$pod_mtu}"
if [ "$mtu" -gt "$pod_mtu" ]; then
  why="daemon.mtu $mtu is above the pod network's MTU $pod_mtu, so nested containers' large packets would be dropped; set daemon.mtu to $pod_mtu or less, or leave it unset"
  echo "dockersandbox: $why" >&2
  echo "$why" > /dev/termination-log 2>/dev/null || true
  exit 1
fi
# Nested containers run with oom_score_adj 0, while the kubelet gives a Burstable pod's processes a
# high score: without this the pod's memory limit kills dockerd instead of a nested hog. Lowering
# below 0 needs CAP_SYS_RESOURCE; where it is missing, 0 still ties dockerd with its containers.
echo -500 > /proc/self/oom_score_adj 2>/dev/null || echo 0 > /proc/self/oom_score_adj 2>/dev/null || true
mkdir -p /etc/docker
printf '%s\n' "$DOCKERSANDBOX_DAEMON_JSON" > /etc/docker/daemon.json
echo "dockersandbox: starting dockerd (mtu $mtu)"
exec dockerd-entrypoint.sh dockerd \
  --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 \
  --tlsverify --tlscacert=/certs/server/ca.pem --tlscert=/certs/server/cert.pem --tlskey=/certs/server/key.pem \
  --mtu="$mtu" --default-network-opt="bridge=com.docker.network.driver.mtu=$mtu"
"#;

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.to_string()), ..EnvVar::default() }
}

fn docker_probe(period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(
                ["docker", "--host", "unix:///var/run/docker.sock", "version", "--format", "{{.Server.Version}}"]
                    .map(String::from)
                    .to_vec(),
            ),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn container(plan: &Plan) -> Container {
    let mut env = vec![
        env("DOCKER_TLS_CERTDIR", ""),
        env(
            "DOCKERSANDBOX_DAEMON_JSON",
            &daemon_json::render(&plan.daemon, plan.build_cache_keep(), plan.shutdown_timeout()),
        ),
    ];
    if let Some(mtu) = plan.daemon.mtu {
        env.push(self::env("DOCKERSANDBOX_MTU", &mtu.to_string()));
    }
    Container {
        name: "dockerd".to_string(),
        image: Some(plan.image.clone()),
        image_pull_policy: plan.pull_policy.map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_string()
        }),
        command: Some(vec!["/bin/sh".into(), "-c".into(), START_SCRIPT.into()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(DOCKER_TLS_PORT_NAME.to_string()),
            container_port: DOCKER_TLS_PORT,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        resources: resources(plan),
        security_context: matches!(plan.mode, Mode::Privileged)
            .then(|| SecurityContext { privileged: Some(true), ..SecurityContext::default() }),
        // Startup is polled every second (up to 3 minutes), so Ready follows dockerd closely.
        startup_probe: Some(docker_probe(1, 5, 180)),
        readiness_probe: Some(docker_probe(5, 5, 3)),
        liveness_probe: Some(docker_probe(30, 10, 5)),
        volume_mounts: Some(vec![
            VolumeMount { name: "docker-data".into(), mount_path: "/var/lib/docker".into(), ..VolumeMount::default() },
            VolumeMount {
                name: "server-certs".into(),
                mount_path: CERT_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// The plan's resources; an Ephemeral engine also requests and is limited to its size of
/// `ephemeral-storage` (its /var/lib/docker lives on the node's disk): the scheduler counts it and
/// the kubelet evicts an engine that writes more.
fn resources(plan: &Plan) -> Option<ResourceRequirements> {
    let mut r = plan.resources.clone();
    if plan.storage.ephemeral {
        let r = r.get_or_insert_with(ResourceRequirements::default);
        let size = Quantity(plan.storage.size.clone());
        for map in [&mut r.requests, &mut r.limits] {
            map.get_or_insert_with(BTreeMap::new).entry("ephemeral-storage".into()).or_insert_with(|| size.clone());
        }
    }
    r
}

fn volumes(names: &Names, plan: &Plan) -> Vec<Volume> {
    let data = if plan.storage.ephemeral {
        Volume {
            name: "docker-data".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(plan.storage.size.clone())),
                medium: None,
            }),
            ..Volume::default()
        }
    } else {
        Volume {
            name: "docker-data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names.pvc.clone(),
                read_only: None,
            }),
            ..Volume::default()
        }
    };
    let certs = Volume {
        name: "server-certs".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names.server_secret.clone()),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    vec![data, certs]
}

/// The desired engine pod (identity from `dsb`, everything else from `plan`). `server_cert` is the
/// server certificate in use: it is part of the spec hash, so a renewed certificate rolls the pod
/// (dockerd reads its certificate only at start).
pub fn build(dsb: &DockerSandbox, plan: &Plan, server_cert: &str) -> Pod {
    let names = Names::of(dsb);
    // sysbox: the RuntimeClass plus exactly one user-namespace form (never privileged).
    let (runtime_class, host_users, userns_annotation) = match &plan.mode {
        Mode::Sysbox { runtime_class, user_namespace: UserNamespace::HostUsers, .. } => {
            (Some(runtime_class.clone()), Some(false), None)
        }
        Mode::Sysbox { runtime_class, user_namespace: UserNamespace::CrioAnnotation, .. } => {
            (Some(runtime_class.clone()), None, Some(CRIO_USERNS_MODE))
        }
        Mode::Privileged => (None, None, None),
    };
    let spec = PodSpec {
        containers: vec![container(plan)],
        volumes: Some(volumes(&names, plan)),
        host_users,
        runtime_class_name: runtime_class,
        restart_policy: Some("Always".into()),
        termination_grace_period_seconds: Some(plan.lifecycle.stop_grace_seconds),
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        image_pull_secrets: (!plan.image_pull_secrets.is_empty()).then(|| plan.image_pull_secrets.clone()),
        node_selector: (!plan.placement.node_selector.is_empty()).then(|| plan.placement.node_selector.clone()),
        tolerations: (!plan.placement.tolerations.is_empty()).then(|| plan.placement.tolerations.clone()),
        affinity: plan.placement.affinity.clone(),
        priority_class_name: plan.placement.priority_class_name.clone(),
        ..PodSpec::default()
    };
    let mut metadata = meta(dsb, &names.pod, "engine", true);
    let mut annotations =
        BTreeMap::from([(SPEC_HASH_ANNOTATION.to_string(), hash(&spec, server_cert, userns_annotation))]);
    if let Some(mode) = userns_annotation {
        annotations.insert(CRIO_USERNS_ANNOTATION.to_string(), mode.to_string());
    }
    annotations.insert(CREDENTIALS_ANNOTATION.to_string(), plan.credentials_generation.to_string());
    metadata.annotations = Some(annotations);
    Pod { metadata, spec: Some(spec), status: None }
}

/// The spec hash: the pod spec, the server certificate and, when set, the CRI-O user-namespace
/// annotation (appended only then, so pods without it keep the hash they had).
fn hash(spec: &PodSpec, server_cert: &str, userns_annotation: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    h.update(server_cert.as_bytes());
    if let Some(mode) = userns_annotation {
        h.update(CRIO_USERNS_ANNOTATION.as_bytes());
        h.update(mode.as_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Annotation on the engine pod: the `spec.credentials.generation` its certificates belong to. A
/// pod of another generation trusts a revoked CA and is stopped at once, whatever else happens.
pub const CREDENTIALS_ANNOTATION: &str = super::secret::GENERATION_ANNOTATION;

/// The credentials generation recorded on a pod, if any (pods made before it was recorded have none).
pub fn credentials_of(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref()?.get(CREDENTIALS_ANNOTATION).map(String::as_str)
}

/// The spec hash recorded on a pod, if any.
pub fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref()?.get(SPEC_HASH_ANNOTATION).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::{Facts, resolve};
    use crate::resources::testing::{minimal, sandbox};

    fn build_for(dsb: &DockerSandbox, facts: &Facts) -> Pod {
        let plan = resolve(dsb, facts, &Config::for_tests()).expect("plan");
        build(dsb, &plan, "CERT")
    }

    fn spec(pod: &Pod) -> &PodSpec {
        pod.spec.as_ref().expect("spec")
    }

    #[test]
    fn privileged_when_no_sysbox() {
        let pod = build_for(&minimal(), &crate::resources::testing::privileged_ok());
        let s = spec(&pod);
        let c = &s.containers[0];
        assert_eq!(c.security_context.as_ref().and_then(|s| s.privileged), Some(true));
        assert_eq!(s.runtime_class_name, None);
        assert_eq!(s.host_users, None);
        assert_eq!(c.image.as_deref(), Some(crate::config::DEFAULT_IMAGE));
        assert_eq!(pod.metadata.name.as_deref(), Some("web-engine"));
    }

    fn sysbox_pod(user_namespace: UserNamespace) -> Pod {
        let dsb = minimal();
        let mut plan = crate::resources::testing::plan(&dsb);
        plan.mode = Mode::Sysbox { runtime_class: "sysbox-runc".into(), user_namespace, because: "test".into() };
        build(&dsb, &plan, "CERT")
    }

    fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
        pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn sysbox_on_containerd_sets_host_users_false_and_no_annotation() {
        let pod = sysbox_pod(UserNamespace::HostUsers);
        let s = spec(&pod);
        assert_eq!(s.runtime_class_name.as_deref(), Some("sysbox-runc"));
        assert_eq!(s.host_users, Some(false));
        assert_eq!(annotation(&pod, CRIO_USERNS_ANNOTATION), None);
        assert!(s.containers[0].security_context.is_none(), "never privileged or extra capabilities under sysbox");
    }

    #[test]
    fn sysbox_on_cri_o_sets_the_annotation_and_no_host_users() {
        let pod = sysbox_pod(UserNamespace::CrioAnnotation);
        let s = spec(&pod);
        assert_eq!(s.runtime_class_name.as_deref(), Some("sysbox-runc"));
        assert_eq!(s.host_users, None, "hostUsers: false makes sysbox pods fail on CRI-O");
        assert_eq!(annotation(&pod, CRIO_USERNS_ANNOTATION), Some("auto:size=65536"));
        assert!(s.containers[0].security_context.is_none());
    }

    #[test]
    fn switching_the_user_namespace_form_rolls_the_pod() {
        let a = sysbox_pod(UserNamespace::HostUsers);
        let b = sysbox_pod(UserNamespace::CrioAnnotation);
        assert_ne!(hash_of(&a), hash_of(&b));
    }

    #[test]
    fn tls_flags_certificates_and_volumes() {
        let pod = build_for(&minimal(), &crate::resources::testing::privileged_ok());
        let s = spec(&pod);
        let c = &s.containers[0];
        let script = &c.command.as_ref().expect("command")[2];
        assert!(script.contains("--tlsverify"));
        assert!(script.contains("--host=tcp://0.0.0.0:2376"));
        assert!(script.contains("--host=unix:///var/run/docker.sock"));
        assert!(script.contains("com.docker.network.driver.mtu"));
        assert!(script.contains("/proc/self/oom_score_adj"), "dockerd must not be the OOM killer's first pick");
        let env = c.env.as_ref().expect("env");
        assert!(env.iter().any(|e| e.name == "DOCKER_TLS_CERTDIR" && e.value.as_deref() == Some("")));
        let vols = s.volumes.as_ref().expect("volumes");
        assert_eq!(vols[0].persistent_volume_claim.as_ref().map(|p| p.claim_name.as_str()), Some("web-docker"));
        assert_eq!(vols[1].secret.as_ref().and_then(|s| s.secret_name.as_deref()), Some("web-server"));
        assert!(vols.iter().all(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) != Some("web-ca")));
        assert_eq!(s.termination_grace_period_seconds, Some(GRACE_SECONDS));
        assert!(c.readiness_probe.as_ref().and_then(|p| p.exec.as_ref()).is_some());
    }

    #[test]
    fn spec_fields_reach_the_pod() {
        let dsb = sandbox(
            r#"apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandbox
metadata: {name: big}
spec:
  image: registry.example.com/dind:27.1
  imagePullPolicy: Always
  imagePullSecrets: [{name: regcred}]
  storage: {type: Ephemeral, size: 8Gi}
  resources: {limits: {memory: 4Gi, cpu: "2"}}
  nodeSelector: {pool: dind}
  tolerations: [{key: dedicated, operator: Equal, value: dind, effect: NoSchedule}]
  daemon: {mtu: 1400, registryMirrors: ["https://mirror.example.com"]}
"#,
        );
        let pod = build_for(&dsb, &crate::resources::testing::privileged_ok());
        let s = spec(&pod);
        let c = &s.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example.com/dind:27.1"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(s.image_pull_secrets.as_ref().map(Vec::len), Some(1));
        assert_eq!(c.resources.as_ref().and_then(|r| r.limits.as_ref()).map(|l| l["memory"].0.as_str()), Some("4Gi"));
        assert_eq!(s.node_selector.as_ref().map(|n| n["pool"].as_str()), Some("dind"));
        assert_eq!(s.tolerations.as_ref().map(Vec::len), Some(1));
        let data = &s.volumes.as_ref().expect("volumes")[0];
        assert_eq!(data.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()).map(|q| q.0.as_str()), Some("8Gi"));
        let r = c.resources.as_ref().expect("resources");
        for map in [&r.requests, &r.limits] {
            let disk = map.as_ref().and_then(|m| m.get("ephemeral-storage")).map(|q| q.0.as_str());
            assert_eq!(disk, Some("8Gi"), "an Ephemeral engine asks for and is held to its size of node disk");
        }
        let env = c.env.as_ref().expect("env");
        assert!(env.iter().any(|e| e.name == "DOCKERSANDBOX_MTU" && e.value.as_deref() == Some("1400")));
        let daemon = env.iter().find(|e| e.name == "DOCKERSANDBOX_DAEMON_JSON").and_then(|e| e.value.clone());
        assert!(daemon.expect("daemon json").contains("mirror.example.com"));
    }

    #[test]
    fn hash_changes_with_spec_and_certificate_only() {
        let dsb = minimal();
        let plan = resolve(&dsb, &crate::resources::testing::privileged_ok(), &Config::for_tests()).expect("plan");
        let a = build(&dsb, &plan, "CERT");
        assert_eq!(hash_of(&a), hash_of(&build(&dsb, &plan, "CERT")));
        assert_ne!(hash_of(&a), hash_of(&build(&dsb, &plan, "RENEWED")));
        let mut bigger = dsb.clone();
        bigger.spec.daemon.mtu = Some(1400);
        let plan2 = resolve(&bigger, &crate::resources::testing::privileged_ok(), &Config::for_tests()).expect("plan");
        assert_ne!(hash_of(&a), hash_of(&build(&bigger, &plan2, "CERT")));
    }
}
