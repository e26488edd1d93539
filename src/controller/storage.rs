//! Step: the PersistentVolumeClaim for /var/lib/docker (none for ephemeral storage), and what its
//! state means for the sandbox.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;

use super::apply::{Child, stamped};
use super::context::Target;
use super::status::Storage;
use crate::error::Result;
use crate::plan::Plan;
use crate::quantity::parse as quantity;
use crate::resources::pvc;

/// Applies the claim; a change the StorageClass refuses (e.g. a resize it cannot do) keeps the
/// engine on the volume it has, and says so.
pub async fn ensure(t: &Target<'_>, plan: &Plan) -> Result<Storage> {
    let Some(claim) = pvc::build(t.dsb, plan).map(|c| stamped(&c)) else { return Ok(Storage::Ephemeral) };
    // A Retain volume of an earlier sandbox with this name is adopted; anyone else's is left alone.
    let child = Child::adoptable(t, &t.names.pvc);
    let existing = child.observed()?;
    if let Some(why) = existing.as_ref().and_then(|c| shrinks(c, &claim)) {
        // The API server would refuse it; the engine keeps the volume it has.
        return Ok(Storage::Waiting(why));
    }
    let existed = existing.is_some();
    match child.ensure(&claim, existing).await {
        Ok(applied) => Ok(state(&applied)),
        Err(e) if e.is_permanent() && existed => Ok(Storage::Waiting(format!(
            "PersistentVolumeClaim {} could not be updated to the spec: {}",
            t.names.pvc,
            e.api_message().unwrap_or_default()
        ))),
        Err(e) => Err(e),
    }
}

/// Why applying `desired` to `current` would shrink the volume, which no StorageClass can do (most
/// often: `storage.size` was never set, the operator's default made it bigger, and now a smaller size
/// is set).
pub fn shrinks(current: &PersistentVolumeClaim, desired: &PersistentVolumeClaim) -> Option<String> {
    let size = |c: &PersistentVolumeClaim| {
        c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone())
    };
    let (have, want) = (size(current)?, size(desired)?);
    (quantity(&want)? < quantity(&have)?).then(|| {
        format!(
            "storage.size {want} is smaller than the volume's {have} (when storage.size is not set, the operator's \
             default size applies), and a volume cannot shrink; set storage.size to {have} or more. The engine keeps \
             its volume"
        )
    })
}

/// What a claim's status means for the sandbox.
pub fn state(claim: &PersistentVolumeClaim) -> Storage {
    let name = claim.name_any();
    match claim.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Bound") => Storage::Bound,
        Some("Lost") => Storage::Waiting(format!(
            "PersistentVolumeClaim {name} lost its volume; restore the PersistentVolume or delete the claim"
        )),
        _ if claim.metadata.deletion_timestamp.is_some() => {
            Storage::Waiting(format!("PersistentVolumeClaim {name} is being deleted; it is re-created once it is gone"))
        }
        _ => Storage::Waiting(format!(
            "waiting for PersistentVolumeClaim {name} to bind (a WaitForFirstConsumer class binds once the engine pod is scheduled); see kubectl describe pvc {name}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn claim(phase: Option<&str>, deleting: bool) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some("web-docker".into());
        if deleting {
            c.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        c.status = phase.map(|p| PersistentVolumeClaimStatus { phase: Some(p.into()), ..Default::default() });
        c
    }

    fn waiting(s: Storage) -> String {
        match s {
            Storage::Waiting(m) => m,
            other => panic!("expected Waiting, got {other:?}"),
        }
    }

    #[test]
    fn a_smaller_size_than_the_volume_has_is_explained_not_applied() {
        let sized = |s: &str| {
            let mut c = claim(Some("Bound"), false);
            c.spec = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
                resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(s.to_string()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            c
        };
        let m = shrinks(&sized("20Gi"), &sized("10Gi")).expect("shrink");
        assert!(m.starts_with("storage.size 10Gi is smaller than the volume's 20Gi"), "{m}");
        assert!(m.contains("set storage.size to 20Gi or more"), "{m}");
        assert_eq!(shrinks(&sized("20Gi"), &sized("20480Mi")), None, "same size in other units");
        assert_eq!(shrinks(&sized("20Gi"), &sized("30Gi")), None, "growing is fine");
    }

    #[test]
    fn bound_claim_is_bound() {
        assert_eq!(state(&claim(Some("Bound"), false)), Storage::Bound);
    }

    #[test]
    fn pending_claim_names_itself_and_the_command_to_look() {
        let m = waiting(state(&claim(Some("Pending"), false)));
        assert!(m.contains("waiting for PersistentVolumeClaim web-docker to bind"), "{m}");
        assert!(m.contains("kubectl describe pvc web-docker"), "{m}");
        assert_eq!(waiting(state(&claim(None, false))), m, "no status yet reads like Pending");
    }

    #[test]
    fn lost_claim_says_how_to_recover() {
        let m = waiting(state(&claim(Some("Lost"), false)));
        assert!(m.contains("lost its volume") && m.contains("restore the PersistentVolume"), "{m}");
    }

    #[test]
    fn claim_being_deleted_is_not_reported_as_pending_binding() {
        let m = waiting(state(&claim(Some("Pending"), true)));
        assert!(m.contains("is being deleted"), "{m}");
        assert_eq!(state(&claim(Some("Bound"), true)), Storage::Bound, "a bound claim still serves until it goes");
    }
}
