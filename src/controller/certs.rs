//! Keeps a sandbox's CA, server and client certificates present, valid and renewed. Only what is
//! missing, invalid or due for renewal is issued; the CA is replaced only when it is gone or
//! expiring, and then loudly (a Warning event), because tenants must fetch the new client Secret.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::{Api, ResourceExt};

use super::apply::{apply, get};
use super::context::Context;
use crate::crd::{CertificateStatus, DockerSandbox};
use crate::error::Result;
use crate::resources::{Names, secret, service};
use crate::tls::{self, Pem};

/// The sandbox's TLS material, as in use after this reconcile.
pub struct Material {
    /// The CA.
    pub ca: Pem,
    /// The engine's server certificate.
    pub server: Pem,
    /// The tenant's client certificate.
    pub client: Pem,
    /// Expiry times for status.
    pub status: CertificateStatus,
}

fn usable(leaf: &Pem, ca: &Pem, now: i64) -> Option<tls::CertInfo> {
    let info = tls::inspect(&leaf.cert).ok()?;
    (!tls::needs_renewal(&info, now) && tls::is_signed_by(&leaf.cert, &ca.cert)).then_some(info)
}

/// Ensures the three secrets; returns the material in use.
pub async fn ensure(ctx: &Context, dsb: &DockerSandbox, names: &Names, svc: &Service) -> Result<Material> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let now = tls::now();
    let unix = now.unix_timestamp();
    let days = ctx.config.cert_validity_days;
    let who = format!("{}/{}", names.namespace, dsb.name_any());

    let stored_ca = get(&api, &names.ca_secret).await?.and_then(|s| secret::ca_pem(&s));
    let ca_ok = stored_ca.as_ref().and_then(|ca| tls::inspect(&ca.cert).ok()).filter(|i| !tls::needs_renewal(i, unix));
    let (ca, ca_info) = match (stored_ca, ca_ok) {
        (Some(ca), Some(info)) => (ca, info),
        (stored, _) => {
            let ca = tls::new_ca(&format!("dockersandbox CA {who}"), now)?;
            apply(&api, &secret::ca(dsb, &ca)).await?;
            if stored.is_some() || get(&api, &names.client_secret).await?.is_some() {
                let note = format!(
                    "the CA in Secret {} was missing, invalid or expiring, so a new CA was issued; clients must use the new client Secret {}",
                    names.ca_secret, names.client_secret
                );
                ctx.event(dsb, true, "CARegenerated", note).await;
            }
            let info = tls::inspect(&ca.cert)?;
            (ca, info)
        }
    };

    let sans = tls::server_sans(
        &names.service,
        &names.namespace,
        &ctx.config.cluster_domain,
        &service::addresses(svc),
        &dsb.spec.service.extra_sans,
    );
    let stored = get(&api, &names.server_secret).await?.and_then(|s| secret::leaf(&s));
    let current =
        stored.and_then(|l| usable(&l, &ca, unix).filter(|i| tls::normalize(i.sans.clone()) == sans).map(|i| (l, i)));
    let (server, server_info) = match current {
        Some(found) => found,
        None => {
            let leaf = tls::issue_server(&ca, &names.server_name(), &sans, days, now)?;
            apply(&api, &secret::server(dsb, &ca.cert, &leaf)).await?;
            ctx.event(
                dsb,
                false,
                "ServerCertificateIssued",
                format!("issued the engine's server certificate for {}", sans.join(", ")),
            )
            .await;
            let info = tls::inspect(&leaf.cert)?;
            (leaf, info)
        }
    };

    let stored = get(&api, &names.client_secret).await?.and_then(|s| secret::leaf(&s));
    let (client, client_info) = match stored.and_then(|l| usable(&l, &ca, unix).map(|i| (l, i))) {
        Some(found) => found,
        None => {
            let leaf = tls::issue_client(&ca, &format!("dockersandbox client {who}"), days, now)?;
            apply(&api, &secret::client(dsb, &ca.cert, &leaf)).await?;
            ctx.event(
                dsb,
                false,
                "ClientCertificateIssued",
                format!("issued the client certificate in Secret {}", names.client_secret),
            )
            .await;
            let info = tls::inspect(&leaf.cert)?;
            (leaf, info)
        }
    };

    let status = CertificateStatus {
        ca_not_after: tls::rfc3339(ca_info.not_after),
        server_not_after: tls::rfc3339(server_info.not_after),
        client_not_after: tls::rfc3339(client_info.not_after),
    };
    Ok(Material { ca, server, client, status })
}

/// The ClusterIP the server certificate was issued for, if a server certificate exists: its IP
/// SANs other than loopback and the spec's extra SANs.
pub async fn previous_cluster_ip(ctx: &Context, dsb: &DockerSandbox, names: &Names) -> Result<Option<String>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let Some(leaf) = get(&api, &names.server_secret).await?.and_then(|s| secret::leaf(&s)) else { return Ok(None) };
    let Ok(info) = tls::inspect(&leaf.cert) else { return Ok(None) };
    Ok(info.sans.into_iter().find(|san| {
        san.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()) && !dsb.spec.service.extra_sans.contains(san)
    }))
}
