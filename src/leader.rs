//! Leader election with a Lease (kube-lease-manager): only the holder reconciles. A standby waits,
//! keeps `/readyz` answering (it is healthy, just not leading) and says who leads; a leader that
//! loses the Lease stops at once, because two reconcilers must never run together.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::watcher::watch_object;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::crd::FIELD_MANAGER;
use crate::metrics::Metrics;

/// Who leads, in the words `/readyz` answers with.
#[derive(Clone, Default)]
pub struct Role(Arc<RwLock<String>>);

impl Role {
    /// A role text for a process without leader election.
    pub fn single() -> Self {
        Self(Arc::new(RwLock::new("leader (no leader election)".into())))
    }

    /// The current text.
    pub fn get(&self) -> String {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn set(&self, text: String) {
        if let Ok(mut s) = self.0.write() {
            *s = text;
        }
    }
}

/// The text for a replica that is (`leading`) or is not the holder `holder`.
pub fn describe(leading: bool, holder: Option<&str>) -> String {
    match (leading, holder) {
        (true, _) => "leader".into(),
        (false, Some(h)) if !h.is_empty() => format!("standby (leader: {h})"),
        (false, _) => "standby (no leader yet)".into(),
    }
}

/// This replica's part in the election.
pub struct Election {
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    holder: JoinHandle<()>,
}

impl Election {
    /// Joins the election for Lease `name` in `namespace` as `identity`.
    pub async fn join(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        seconds: u64,
        role: Role,
        metrics: Arc<Metrics>,
    ) -> kube_lease_manager::Result<Self> {
        let manager = LeaseManagerBuilder::new(client.clone(), name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(seconds)
            .with_grace((seconds / 3).max(1))
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        // Who holds the Lease, from a watch on it (no polling), for /readyz and the logs.
        let lease_api = Api::<Lease>::namespaced(client, namespace);
        let (lease, me) = (name.to_string(), identity.to_string());
        let holder = tokio::spawn(async move {
            let mut changes = std::pin::pin!(watch_object(lease_api, &lease));
            let mut last = None;
            while let Some(event) = changes.next().await {
                let Ok(found) = event else { continue };
                let holder = found.and_then(|l| l.spec?.holder_identity);
                let leading = holder.as_deref() == Some(me.as_str());
                metrics.set_leader(leading);
                role.set(describe(leading, holder.as_deref()));
                if holder != last && !leading {
                    info!(leader = holder.as_deref().unwrap_or("none"), "standby");
                }
                last = holder;
            }
        });
        Ok(Self { leading, task, holder })
    }

    /// Waits until this replica holds the Lease; `false` when the election ended first.
    pub async fn acquired(&mut self) -> bool {
        let won = self.leading.wait_for(|l| *l).await.is_ok();
        if won {
            info!("leading: this replica holds the Lease and reconciles");
        }
        won
    }

    /// Resolves when this replica stops holding the Lease.
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|l| !*l).await;
    }

    /// Gives the Lease up (on shutdown), so a standby takes over at once instead of after expiry.
    pub async fn resign(self) {
        self.holder.abort();
        drop(self.leading);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => info!("released the Lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "could not release the Lease; it expires by itself"),
            _ => warn!("the Lease was not released in time; it expires by itself"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_says_who_leads() {
        assert_eq!(describe(true, Some("op-a")), "leader");
        assert_eq!(describe(false, Some("op-a")), "standby (leader: op-a)");
        assert_eq!(describe(false, None), "standby (no leader yet)");
        assert_eq!(describe(false, Some("")), "standby (no leader yet)");
        let role = Role::default();
        role.set(describe(false, Some("op-b")));
        assert_eq!(role.get(), "standby (leader: op-b)");
        assert_eq!(Role::single().get(), "leader (no leader election)");
    }
}
