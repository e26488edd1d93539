//! Property tests on the pure parts: for any spec the schema admits, planning and building never
//! panic, every object gets names and labels the API server accepts, and the same input always
//! gives the same objects (so a steady cluster sees no spurious rolls).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;

use crate::crd::{
    DaemonSpec, DockerSandbox, DockerSandboxSpec, Isolation, LogLevel, ReclaimPolicy, ServiceSpec, ServiceType,
    StorageSpec, StorageType,
};
use crate::plan::{self, Facts, NodeRuntime};
use crate::resources::testing::open_class;
use crate::resources::{daemon_json, pod, pvc, secret, service};
use crate::tls::Pem;

fn isolation() -> impl Strategy<Value = Isolation> {
    prop_oneof![Just(Isolation::Auto), Just(Isolation::Sysbox), Just(Isolation::Privileged)]
}

fn storage() -> impl Strategy<Value = StorageSpec> {
    (
        prop_oneof![Just(StorageType::Persistent), Just(StorageType::Ephemeral)],
        proptest::option::of("[1-9][0-9]{0,3}(Gi|Ti)"),
        proptest::option::of("[a-z][a-z0-9-]{0,20}"),
        prop_oneof![Just(ReclaimPolicy::Retain), Just(ReclaimPolicy::Delete)],
    )
        .prop_map(|(kind, size, class, reclaim_policy)| StorageSpec {
            storage_class_name: class.filter(|_| kind == StorageType::Persistent),
            kind,
            size,
            reclaim_policy,
            discard_on_suspend: false,
        })
}

fn daemon() -> impl Strategy<Value = DaemonSpec> {
    (
        proptest::collection::vec("https://[a-z]{1,10}\\.example\\.com", 0..3),
        proptest::collection::vec("[a-z]{1,10}\\.internal:[1-9][0-9]{3}", 0..3),
        proptest::option::of(prop_oneof![Just(LogLevel::Debug), Just(LogLevel::Info), Just(LogLevel::Error)]),
        proptest::option::of((1u8..=223, 0u8..=255).prop_map(|(a, b)| format!("{a}.{b}.0.1/24"))),
        proptest::option::of(576i32..=9216),
    )
        .prop_map(|(registry_mirrors, insecure_registries, log_level, bip, mtu)| DaemonSpec {
            registry_mirrors,
            insecure_registries,
            log_level,
            bip,
            default_address_pools: Vec::new(),
            mtu,
        })
}

fn sandbox() -> impl Strategy<Value = DockerSandbox> {
    (
        "[a-z]([-a-z0-9]{0,54}[a-z0-9])?",
        "[a-z]([-a-z0-9]{0,30}[a-z0-9])?",
        isolation(),
        proptest::option::of("[a-z0-9]{1,12}(/[a-z0-9-]{1,12})?:[a-z0-9.-]{1,12}"),
        storage(),
        proptest::option::of("[1-9][0-9]?Gi"),
        proptest::collection::btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..3),
        prop_oneof![Just(ServiceType::ClusterIP), Just(ServiceType::NodePort), Just(ServiceType::LoadBalancer)],
        proptest::collection::vec("[a-z]{1,8}\\.example\\.com", 0..3),
        daemon(),
        0i64..4,
    )
        .prop_map(
            |(name, ns, isolation, image, storage, memory, node_selector, kind, extra_sans, daemon, generation)| {
                let spec = DockerSandboxSpec {
                    isolation,
                    image,
                    storage,
                    resources: memory.map(|m| ResourceRequirements {
                        limits: Some(BTreeMap::from([("memory".to_string(), Quantity(m))])),
                        ..ResourceRequirements::default()
                    }),
                    node_selector,
                    service: ServiceSpec { kind, annotations: BTreeMap::new(), extra_sans },
                    daemon,
                    credentials: crate::crd::CredentialsSpec { generation },
                    ..DockerSandboxSpec::default()
                };
                let mut dsb = DockerSandbox::new(&name, spec);
                dsb.metadata.namespace = Some(ns);
                dsb.metadata.uid = Some("0000-1111".into());
                dsb.metadata.generation = Some(1);
                dsb
            },
        )
}

fn facts() -> impl Strategy<Value = Facts> {
    (any::<bool>(), proptest::option::of(prop_oneof![Just("privileged"), Just("baseline"), Just("restricted")]))
        .prop_map(|(sysbox, enforce)| Facts {
            namespace: "team-a".into(),
            class: open_class(),
            sysbox_runtime_class: sysbox,
            pod_security_enforce: enforce.map(str::to_string),
            sysbox_nodes: sysbox.then(|| vec![NodeRuntime { node: "n".into(), runtime: "containerd://2.1.9".into() }]),
            ..Facts::default()
        })
}

/// A DNS-1123 label: what names of pods, Services, Secrets and PVCs (and label values) must be.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn meta_is_valid(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Result<(), String> {
    let name = meta.name.clone().unwrap_or_default();
    if !dns_label(&name) {
        return Err(format!("name {name:?} is not a DNS label"));
    }
    for (k, v) in meta.labels.iter().flatten() {
        if !(v.is_empty() || dns_label(&v.to_lowercase()) && v.len() <= 63) {
            return Err(format!("label {k}={v:?} is not a valid label value"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn planning_and_building_never_panic_and_give_valid_deterministic_objects(dsb in sandbox(), facts in facts()) {
        let config = crate::config::Config::for_tests();
        let Ok(plan) = plan::resolve(&dsb, &facts, &config) else { return Ok(()) };
        let pem = Pem { cert: "CERT".into(), key: "KEY".into() };
        let engine = pod::build(&dsb, &plan, &pem.cert);
        prop_assert_eq!(&engine, &pod::build(&dsb, &plan, &pem.cert), "the pod is deterministic");
        let again = pod::build(&dsb, &plan, &pem.cert);
        prop_assert_eq!(pod::hash_of(&engine), pod::hash_of(&again));
        prop_assert!(meta_is_valid(&engine.metadata).is_ok(), "{:?}", meta_is_valid(&engine.metadata));
        let svc = service::build(&dsb, &plan);
        prop_assert!(meta_is_valid(&svc.metadata).is_ok(), "{:?}", meta_is_valid(&svc.metadata));
        prop_assert_eq!(&svc, &service::build(&dsb, &plan));
        if let Some(claim) = pvc::build(&dsb, &plan) {
            prop_assert!(meta_is_valid(&claim.metadata).is_ok(), "{:?}", meta_is_valid(&claim.metadata));
        }
        for s in [secret::ca(&dsb, &pem.cert, plan.credentials_generation), secret::ca_key(&dsb, &pem, 1, "ops"), secret::server(&dsb, "CA", &pem), secret::client(&dsb, "CA", &pem)] {
            prop_assert!(meta_is_valid(&s.metadata).is_ok(), "{:?}", meta_is_valid(&s.metadata));
        }
        let np = crate::resources::network_policy::build(&dsb, &plan);
        prop_assert!(meta_is_valid(&np.metadata).is_ok(), "{:?}", meta_is_valid(&np.metadata));
        let json: serde_json::Value = serde_json::from_str(&daemon_json::render(&plan.daemon, plan.build_cache_keep(), plan.shutdown_timeout())).expect("daemon.json is JSON");
        prop_assert!(json["bip"].is_string());
        // and the status computed from any outcome never panics
        let seen = crate::controller::status::Observed {
            mode: plan.mode.clone(),
            class: plan.class.clone(),
            certificates: crate::crd::CertificateStatus::default(),
            storage: crate::controller::status::Storage::Bound,
            engine: crate::controller::status::Engine::NotAnswering("starting".into()),
            network: crate::resources::network_policy::describe(&dsb, &plan),
            resources: plan.resources.clone(),
            facts: None,
            disk_pressure: None,
            idle_since: None,
            expires_at: None,
            expiring: None,
        };
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH);
        let status = crate::controller::status::compute(&dsb, &crate::controller::status::Outcome::Placed(Box::new(seen)), &now);
        prop_assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn refusals_always_explain_themselves(dsb in sandbox(), facts in facts()) {
        let mut config = crate::config::Config::for_tests();
        config.allow_privileged = false;
        if let Err(r) = plan::resolve(&dsb, &facts, &config) {
            prop_assert!(!r.reason.is_empty() && r.reason.chars().all(|c| c.is_ascii_alphanumeric()));
            prop_assert!(r.message.len() > 20, "{}", r.message);
            prop_assert!(!r.message.contains("Some(") && !r.message.contains("{ "), "no debug dumps: {}", r.message);
        }
    }
}
