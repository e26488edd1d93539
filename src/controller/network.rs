//! Step: the engine's NetworkPolicy (who may reach port 2376, where nested containers may go).
//! A child like the others: owned, labelled, put back when edited, never taken over.

use super::apply::{Child, stamped};
use super::context::Target;
use crate::crd::NetworkStatus;
use crate::error::Result;
use crate::plan::Plan;
use crate::resources::network_policy;

/// Applies the NetworkPolicy when it is not as wanted; returns what it lets through.
pub async fn ensure(t: &Target<'_>, plan: &Plan) -> Result<NetworkStatus> {
    let desired = stamped(&network_policy::build(t.dsb, plan));
    let child = Child::of(t, &t.names.pod);
    child.ensure(&desired, child.observed()?).await?;
    Ok(network_policy::describe(t.dsb, plan))
}
