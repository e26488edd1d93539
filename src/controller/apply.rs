//! One way to read and write a child: `Child`. It reads what the caches show, overlaid with what
//! this process wrote and the caches have not shown yet (`expect`); creates with a create request
//! (someone else's object of that name makes it fail, never taken over); updates with server-side
//! apply (one field manager, forced); deletes that very object (a UID precondition).

use std::fmt::Debug;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::NamespaceResourceScope;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::cache::Cached;
use super::context::Target;
use crate::crd::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::quantity::parse as quantity;
use crate::resources::claim;

/// A kind of child: cached, namespaced, serializable.
pub trait ChildKind: Cached + Resource<Scope = NamespaceResourceScope> + Serialize {}
impl<K: Cached + Resource<Scope = NamespaceResourceScope> + Serialize> ChildKind for K {}

/// How to tell that an object under a child's name is the sandbox's (`Err`: why it is not).
type Owned<'a> = Box<dyn Fn(&ObjectMeta) -> std::result::Result<(), String> + Send + Sync + 'a>;

/// The sandbox's child `name` of kind `K`.
pub struct Child<'a, 't, K> {
    t: &'a Target<'t>,
    namespace: &'a str,
    name: &'a str,
    owned: Owned<'a>,
    kind: PhantomData<K>,
}

/// What a create found.
pub enum Made<K> {
    /// It created the object (as the API server stored it).
    Created(K),
    /// The sandbox's own object was there already, out of the caches' sight (its labels were
    /// removed): as the API server has it now.
    Found(K),
}

impl<'a, 't, K: ChildKind> Child<'a, 't, K> {
    /// The child `name` in the sandbox's namespace, owned by the sandbox.
    pub fn of(t: &'a Target<'t>, name: &'a str) -> Self {
        Self::owned_by(t, &t.names.namespace, name, Box::new(move |meta| claim(t.dsb, meta, false)))
    }

    /// `of`, also taking the labelled object an earlier sandbox of this name left (a Retain volume).
    pub fn adoptable(t: &'a Target<'t>, name: &'a str) -> Self {
        Self::owned_by(t, &t.names.namespace, name, Box::new(move |meta| claim(t.dsb, meta, true)))
    }

    /// The child `name` in `namespace`, the sandbox's when `owned` says so.
    pub fn owned_by(t: &'a Target<'t>, namespace: &'a str, name: &'a str, owned: Owned<'a>) -> Self {
        Self { t, namespace, name, owned, kind: PhantomData }
    }

    /// Announces a write to the child (the watch may bring it before the answer does).
    fn writing(&self) -> super::expect::Writing<'_> {
        self.t.ctx.expect.writing::<K>(Some(self.namespace), self.name)
    }

    fn api(&self) -> Api<K> {
        Api::namespaced(self.t.ctx.client.clone(), self.namespace)
    }

    fn foreign(&self, why: String) -> Error {
        Error::Foreign { kind: K::kind(&()).to_string(), name: self.name.to_string(), why }
    }

    /// The child as the caches show it, or as this process last wrote it while the caches have not
    /// shown that write yet. `None` when it does not exist; someone else's object of that name is
    /// `Error::Foreign`, and the caller changes nothing.
    pub fn observed(&self) -> Result<Option<K>> {
        let cached = self.t.ctx.caches.get::<K>(Some(self.namespace), self.name);
        let found = self.t.ctx.expect.observed(Some(self.namespace), self.name, cached);
        if let Some(obj) = &found {
            (self.owned)(obj.meta()).map_err(|why| self.foreign(why))?;
        }
        Ok(found.map(|o| (*o).clone()))
    }

    /// Creates `obj`. An object of that name that the caches do not hold is someone else's (the
    /// create fails: `Error::Foreign`) or the sandbox's own with its labels removed (`Made::Found`).
    pub async fn create(&self, obj: &K) -> Result<Made<K>> {
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_string()) };
        let writing = self.writing();
        match self.api().create(&params, obj).await {
            Ok(created) => {
                writing.wrote(&slim(&created));
                Ok(Made::Created(created))
            }
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                match get(&self.api(), self.name).await? {
                    Some(found) => {
                        (self.owned)(found.meta()).map_err(|why| self.foreign(why))?;
                        Ok(Made::Found(found))
                    }
                    // Gone again meanwhile: the next reconcile creates it.
                    None => Err(Error::kube("create", K::kind(&()), self.name)(kube::Error::Api(s))),
                }
            }
            Err(e) => Err(Error::kube("create", K::kind(&()), self.name)(e)),
        }
    }

    /// Updates the child to `obj` with server-side apply and returns what the server stored.
    pub async fn apply(&self, obj: &K) -> Result<K> {
        let api = self.api();
        take_over_created_fields(&api, self.name).await?;
        let writing = self.writing();
        let applied = api
            .patch(self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&with_type(obj)))
            .await
            .map_err(Error::kube("apply", K::kind(&()), self.name))?;
        writing.wrote(&slim(&applied));
        Ok(applied)
    }

    /// The child as `desired` (built `stamped`): `observed` when it already is, created when it is
    /// missing, applied otherwise. A sandbox whose children are as wanted costs no request.
    pub async fn ensure(&self, desired: &K, observed: Option<K>) -> Result<K> {
        self.ensure_if(desired, observed, |c| up_to_date(desired, c)).await
    }

    /// `ensure`, with `same` deciding whether an existing child is as wanted.
    pub async fn ensure_if(&self, desired: &K, observed: Option<K>, same: impl Fn(&K) -> bool) -> Result<K> {
        let current = match observed {
            Some(c) => c,
            None => match self.create(desired).await? {
                Made::Created(c) => return Ok(c),
                Made::Found(c) => c,
            },
        };
        if same(&current) { Ok(current) } else { self.apply(desired).await }
    }

    /// Deletes `obj`, that very object: the request carries its UID as a precondition, so an object
    /// that took its name meanwhile (someone else's) is never deleted. One that is already gone, or
    /// replaced, is fine: the next reconcile looks again.
    pub async fn delete(&self, obj: &K) -> Result<()> {
        let params = DeleteParams {
            preconditions: obj.uid().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::background()
        };
        let writing = self.writing();
        match self.api().delete(self.name, &params).await {
            Ok(answer) => match answer.left() {
                // Still there, going (a pod stops gracefully): as the server has it.
                Some(going) => writing.wrote(&slim(&going)),
                None => writing.deleted(&obj.uid().unwrap_or_default()),
            },
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(Error::kube("delete", K::kind(&()), self.name)(e)),
        }
        Ok(())
    }
}

/// Gets an object live, `None` when it does not exist (for the rare decision that must not rest on
/// a cache: a policy that stops an engine).
pub async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + serde::de::DeserializeOwned + Clone + Debug,
{
    api.get_opt(name).await.map_err(Error::kube("get", K::kind(&()), name))
}

/// `obj` as a full object with apiVersion and kind.
fn with_type<K: Resource<DynamicType = ()> + Serialize>(obj: &K) -> Value {
    let mut body = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
    }
    body
}

/// What the caches would keep of `obj` (what this process remembers of its writes).
pub fn slim<K: Cached>(obj: &K) -> K {
    let mut o = obj.clone();
    o.meta_mut().managed_fields = None;
    K::slim(&mut o);
    o
}

/// A create request records its fields under the operator's manager with operation `Update`, and
/// server-side apply would never remove them (only fields of the `Apply` entry are): before the
/// first apply, those fields move to the operator's `Apply` entry, as `kubectl apply
/// --server-side` does for objects it created client-side. Nothing to do (one read) once they moved.
async fn take_over_created_fields<K: ChildKind>(api: &Api<K>, name: &str) -> Result<()> {
    let Some(live) = get(api, name).await? else {
        return Ok(());
    };
    let Some(entries) = moved_fields(&live.meta().managed_fields.clone().unwrap_or_default()) else {
        return Ok(());
    };
    // The resourceVersion makes it a compare-and-swap: a write in between fails it (and the
    // reconcile is retried).
    let patch = json!({"metadata": {"resourceVersion": live.resource_version(), "managedFields": entries}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(Error::kube(
        "take over the fields of",
        K::kind(&()),
        name,
    ))?;
    Ok(())
}

/// `entries` with the operator's `Update` entries folded into its `Apply` entry; `None` when there
/// is nothing to fold.
pub fn moved_fields(entries: &[ManagedFieldsEntry]) -> Option<Vec<ManagedFieldsEntry>> {
    let ours_by = |e: &ManagedFieldsEntry, op: &str| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some(op) && e.subresource.is_none()
    };
    let created: Vec<_> = entries.iter().filter(|e| ours_by(e, "Update")).cloned().collect();
    let first = created.first()?.clone();
    let mut out: Vec<_> = entries.iter().filter(|e| !ours_by(e, "Update")).cloned().collect();
    let index = match out.iter().position(|e| ours_by(e, "Apply")) {
        Some(i) => i,
        None => {
            out.push(ManagedFieldsEntry { operation: Some("Apply".into()), fields_v1: None, ..first });
            out.len() - 1
        }
    };
    let mut fields = out[index].fields_v1.as_ref().map_or(json!({}), |f| f.0.clone());
    for e in &created {
        if let Some(f) = &e.fields_v1 {
            merge(&mut fields, &f.0);
        }
    }
    out[index].fields_v1 = Some(FieldsV1(fields));
    Some(out)
}

/// Adds the field set `from` to `into` (field sets are trees of objects).
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert_with(|| json!({})), v);
            }
        }
        (slot, v) => {
            if slot.as_object().is_none_or(|o| o.is_empty()) {
                *slot = v.clone();
            }
        }
    }
}

/// Annotation on applied children: a hash of what the operator last applied, so a field it stops
/// setting is noticed (a plain "is what we want there" check cannot see a removal).
pub const APPLIED_HASH_ANNOTATION: &str = "dockersandbox.dev/applied-hash";

/// `obj` with `APPLIED_HASH_ANNOTATION` set to the hash of the rest of it.
pub fn stamped<K: Resource + Serialize + Clone>(obj: &K) -> K {
    let mut out = obj.clone();
    out.annotations_mut().remove(APPLIED_HASH_ANNOTATION);
    let bytes = serde_json::to_vec(&out).unwrap_or_default();
    let hash = format!("{:x}", Sha256::digest(&bytes));
    out.annotations_mut().insert(APPLIED_HASH_ANNOTATION.to_string(), hash[..16].to_string());
    out
}

/// Whether `current` has everything `desired` sets (the API server adds defaults and status, so
/// `current` may hold more); quantities compare by value (`1024Mi` is stored as `1Gi`).
pub fn up_to_date<K: Serialize>(desired: &K, current: &K) -> bool {
    match (serde_json::to_value(desired), serde_json::to_value(current)) {
        (Ok(d), Ok(c)) => contains(&c, &d),
        _ => false,
    }
}

fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| contains(hv, v))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| contains(hv, wv)),
        (Value::String(h), Value::String(w)) => {
            h == w
                || (looks_like_quantity(h)
                    && looks_like_quantity(w)
                    && quantity(h).is_some_and(|a| quantity(w) == Some(a)))
        }
        _ => have == want,
    }
}

/// Quantities start with a digit (so `e3` or `Mi` alone are never taken for one).
fn looks_like_quantity(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::*;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    #[test]
    fn defaults_added_by_the_server_do_not_count_as_a_difference() {
        let desired = svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"ports": [{"name": "docker-tls", "port": 2376}], "selector": {"x": "y"}}}));
        let stored = svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}, "uid": "u", "resourceVersion": "7"},
            "spec": {"ports": [{"name": "docker-tls", "port": 2376, "protocol": "TCP", "targetPort": 2376}],
                     "selector": {"x": "y"}, "clusterIP": "10.96.0.10", "sessionAffinity": "None"},
            "status": {"loadBalancer": {}}}));
        assert!(up_to_date(&desired, &stored));
    }

    #[test]
    fn an_edited_or_missing_field_is_a_difference() {
        let desired =
            svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}}, "spec": {"ports": [{"port": 2376}]}}));
        let edited =
            svc(json!({"metadata": {"name": "web", "labels": {"a": "2"}}, "spec": {"ports": [{"port": 2376}]}}));
        let missing = svc(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 2376}]}}));
        let extra_port = svc(json!({"metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"ports": [{"port": 2376}, {"port": 1}]}}));
        assert!(!up_to_date(&desired, &edited));
        assert!(!up_to_date(&desired, &missing));
        assert!(!up_to_date(&desired, &extra_port), "a list must match entry by entry");
    }

    #[test]
    fn quantities_compare_by_value_only_when_both_are_quantities() {
        assert!(contains(&json!("1Gi"), &json!("1024Mi")));
        assert!(!contains(&json!("2Gi"), &json!("1024Mi")));
        assert!(!contains(&json!("Mi"), &json!("Mi ")));
    }

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        serde_json::from_value(json!({"manager": manager, "operation": operation, "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": fields}))
        .expect("entry")
    }

    #[test]
    fn fields_a_create_recorded_move_to_the_apply_entry() {
        let kubelet = entry("kubelet", "Update", json!({"f:status": {}}));
        let created = entry(FIELD_MANAGER, "Update", json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {}}));
        let out = moved_fields(&[kubelet.clone(), created.clone()]).expect("something to move");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], kubelet, "other managers are untouched");
        assert_eq!(out[1].operation.as_deref(), Some("Apply"));
        assert_eq!(out[1].fields_v1.as_ref().map(|f| f.0.clone()), created.fields_v1.map(|f| f.0));
        // Both entries: the field sets are joined into the apply entry.
        let applied = entry(FIELD_MANAGER, "Apply", json!({"f:metadata": {"f:labels": {"f:b": {}}}}));
        let created = entry(FIELD_MANAGER, "Update", json!({"f:metadata": {"f:labels": {"f:a": {}}}}));
        let out = moved_fields(&[applied, created]).expect("something to move");
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].fields_v1.as_ref().map(|f| f.0.clone()),
            Some(json!({"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}}))
        );
        assert!(moved_fields(&out).is_none(), "nothing left to move: no request");
    }

    #[test]
    fn the_stamp_changes_when_a_field_is_dropped_and_is_stable_otherwise() {
        let with = svc(json!({"metadata": {"name": "web", "annotations": {"team": "a"}}}));
        let without = svc(json!({"metadata": {"name": "web"}}));
        let (a, b) = (stamped(&with), stamped(&without));
        assert_eq!(stamped(&a).annotations(), a.annotations(), "stamping twice changes nothing");
        assert_ne!(a.annotations()[APPLIED_HASH_ANNOTATION], b.annotations()[APPLIED_HASH_ANNOTATION]);
        // What was applied with the annotation no longer satisfies the smaller wish.
        assert!(!up_to_date(&b, &a));
        assert!(up_to_date(&a, &a));
    }
}
