//! The plugin's reads from the API server: the kubeconfig, the sandbox, its client Secret and its
//! Service. Every failure names what was read and where.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::cli::Global;
use super::error::{Error, Result, api, is_not_found};
use super::files::Certs;
use crate::crd::conditions::READY;
use crate::crd::{DockerSandbox, Phase};
use crate::resources::Names;

/// A client and the namespace the user means.
#[derive(Clone)]
pub struct Cluster {
    /// The API client.
    pub client: Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
}

/// The kube configuration the global flags select.
async fn config(global: &Global) -> Result<Config> {
    let options = KubeConfigOptions { context: global.context.clone(), ..KubeConfigOptions::default() };
    let err = |e: &dyn std::fmt::Display| Error::Config(e.to_string());
    match &global.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| err(&e))
        }
        None if global.context.is_some() => Config::from_kubeconfig(&options).await.map_err(|e| err(&e)),
        None => Config::infer().await.map_err(|e| err(&e)),
    }
}

impl Cluster {
    /// Connects as the kubeconfig (and `--kubeconfig`, `--context`, `-n`) say.
    pub async fn new(global: &Global) -> Result<Self> {
        let config = config(global).await?;
        let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self { client, namespace })
    }

    /// An API of cluster-scoped `K`.
    pub fn api_all<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    /// An API of namespaced `K` in the user's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The sandbox `name`, or [`Error::SandboxNotFound`].
    pub async fn sandbox(&self, name: &str) -> Result<DockerSandbox> {
        match self.api::<DockerSandbox>().get(name).await {
            Ok(dsb) => Ok(dsb),
            Err(e) if is_not_found(&e) => {
                Err(Error::SandboxNotFound { namespace: self.namespace.clone(), name: name.to_string() })
            }
            Err(e) => Err(api("get", "dockersandboxes", name, &self.namespace)(e)),
        }
    }

    /// The sandbox `name`, which must be Ready.
    pub async fn ready_sandbox(&self, name: &str) -> Result<DockerSandbox> {
        let dsb = self.sandbox(name).await?;
        require_ready(&dsb)?;
        Ok(dsb)
    }

    /// The client certificates of `dsb` (its Secret `status.clientSecretName`, else `NAME-client`).
    pub async fn client_certs(&self, dsb: &DockerSandbox) -> Result<Certs> {
        let names = Names::of(dsb);
        let secret = dsb
            .status
            .as_ref()
            .and_then(|s| s.client_secret_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or(names.client_secret);
        let got = self.api::<Secret>().get(&secret).await;
        let found = got.map_err(|e| match e {
            e if is_not_found(&e) => Error::Other(format!(
                "Secret {}/{secret} with the client certificate does not exist yet; the sandbox's {}",
                self.namespace,
                ready_condition(dsb)
            )),
            e => api("get", "secrets", &secret, &self.namespace)(e),
        })?;
        Certs::from_secret(&found, &self.namespace, &secret)
    }

    /// The ClusterIP of the sandbox's Service (None for a headless Service).
    pub async fn cluster_ip(&self, dsb: &DockerSandbox) -> Result<Option<IpAddr>> {
        let name = Names::of(dsb).service;
        let svc = self.api::<Service>().get(&name).await.map_err(api("get", "services", &name, &self.namespace))?;
        Ok(svc.spec.and_then(|s| s.cluster_ip).and_then(|ip| ip.parse().ok()))
    }
}

/// `Ready=STATUS, REASON: MESSAGE` of the sandbox's Ready condition, or why there is none.
pub fn ready_condition(dsb: &DockerSandbox) -> String {
    let conditions = dsb.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    match conditions.iter().find(|c| c.type_ == READY) {
        Some(c) => super::printable(&format!("Ready={}, {}: {}", c.status, c.reason, c.message)),
        None => "Ready condition is not set yet (is the operator running? `kubectl describe dsb` shows events)".into(),
    }
}

/// Ok when the sandbox is Ready (phase Ready and the Ready condition True), else
/// [`Error::NotReady`] quoting its Ready condition.
pub fn require_ready(dsb: &DockerSandbox) -> Result<()> {
    let status = dsb.status.as_ref();
    let phase = status.and_then(|s| s.phase);
    let ready = status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == READY && c.status == "True"));
    if phase == Some(Phase::Ready) && ready {
        return Ok(());
    }
    let names = Names::of(dsb);
    Err(Error::NotReady {
        namespace: names.namespace,
        name: names.service,
        phase: phase.map_or("unknown", Phase::as_str).to_string(),
        condition: ready_condition(dsb),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DockerSandboxStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn sandbox(phase: Option<Phase>, ready: Option<(&str, &str, &str)>) -> DockerSandbox {
        let mut dsb: DockerSandbox =
            serde_saphyr::from_str("apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: web, namespace: team-a}\nspec: {}\n")
                .expect("fixture");
        let conditions = ready
            .map(|(status, reason, message)| Condition {
                type_: READY.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            })
            .into_iter()
            .collect();
        dsb.status = Some(DockerSandboxStatus { phase, conditions, ..DockerSandboxStatus::default() });
        dsb
    }

    #[test]
    fn ready_sandboxes_pass() {
        require_ready(&sandbox(Some(Phase::Ready), Some(("True", "EngineReady", "ok")))).expect("ready");
    }

    #[test]
    fn not_ready_quotes_the_ready_condition() {
        let e = require_ready(&sandbox(
            Some(Phase::Failed),
            Some(("False", "ImageNotAllowed", "image x is not allowed by class standard")),
        ))
        .expect_err("not ready");
        assert_eq!(
            e.to_string(),
            "DockerSandbox team-a/web is not Ready (phase Failed): Ready=False, ImageNotAllowed: image x is not allowed by class standard"
        );
        let e = require_ready(&sandbox(None, None)).expect_err("no status");
        assert!(e.to_string().contains("phase unknown"), "{e}");
        assert!(e.to_string().contains("Ready condition is not set yet"), "{e}");
        // a Ready phase with a stale False condition is not Ready either
        assert!(require_ready(&sandbox(Some(Phase::Ready), Some(("False", "EngineNotAnswering", "")))).is_err());
    }
}
