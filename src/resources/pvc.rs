//! The PersistentVolumeClaim for /var/lib/docker.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Names, meta};
use crate::crd::DockerSandbox;
use crate::plan::Plan;

/// The desired PVC of `dsb`, or `None` for ephemeral storage. Under `Retain` the PVC has no owner
/// reference, so deleting the sandbox leaves it for a new sandbox of the same name to adopt.
pub fn build(dsb: &DockerSandbox, plan: &Plan) -> Option<PersistentVolumeClaim> {
    if plan.storage.ephemeral {
        return None;
    }
    let names = Names::of(dsb);
    Some(PersistentVolumeClaim {
        metadata: meta(dsb, &names.pvc, "storage", !plan.storage.retain),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: plan.storage.class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(plan.storage.size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::resolve;
    use crate::resources::testing::{minimal, sandbox};

    fn plan(dsb: &DockerSandbox) -> Plan {
        resolve(dsb, &crate::resources::testing::privileged_ok(), &Config::for_tests()).expect("plan")
    }

    #[test]
    fn retained_by_default_without_owner() {
        let dsb = minimal();
        let pvc = build(&dsb, &plan(&dsb)).expect("pvc");
        assert_eq!(pvc.metadata.name.as_deref(), Some("web-docker"));
        assert!(pvc.metadata.owner_references.is_none());
        let spec = pvc.spec.expect("spec");
        assert_eq!(spec.resources.expect("res").requests.expect("req")["storage"], Quantity("20Gi".into()));
        assert_eq!(spec.storage_class_name, None);
    }

    #[test]
    fn delete_policy_owns_the_claim() {
        let dsb = sandbox(
            "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: tmp}\nspec:\n  storage: {size: 5Gi, storageClassName: fast, reclaimPolicy: Delete}\n",
        );
        let pvc = build(&dsb, &plan(&dsb)).expect("pvc");
        assert_eq!(pvc.metadata.owner_references.expect("owner").len(), 1);
        assert_eq!(pvc.spec.expect("spec").storage_class_name.as_deref(), Some("fast"));
    }

    #[test]
    fn ephemeral_has_no_claim() {
        let dsb = sandbox(
            "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: e}\nspec:\n  storage: {type: Ephemeral}\n",
        );
        assert!(build(&dsb, &plan(&dsb)).is_none());
    }
}
