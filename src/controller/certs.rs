//! Step: keeps a sandbox's CA, server and client certificates present, valid and renewed. Only
//! what is missing, invalid or due for renewal is issued; the CA is replaced only when it is gone or
//! expiring, and then loudly (a Warning event), because tenants must fetch the new client Secret.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::ResourceExt;

use super::apply::{apply, current, live};
use super::context::Target;
use crate::crd::CertificateStatus;
use crate::crd::conditions::reason;
use crate::error::Result;
use crate::plan::Plan;
use crate::resources::{secret, service};
use crate::tls::{self, CertInfo, Pem, TlsError};

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

/// One certificate after `keep_or_issue`.
struct Kept {
    pem: Pem,
    info: CertInfo,
    /// Whether it was issued by this reconcile.
    issued: bool,
    /// Whether a Secret with material was there before (so issuing replaced something).
    replaced: bool,
    /// The Secret as it was before this reconcile.
    before: Option<Secret>,
}

/// Keeps the certificate stored in Secret `name` while `keep` accepts it, putting the Secret back
/// to `build(pem)` if its content was edited (a tampered `ca.pem` in the client bundle does not
/// replace the CA); otherwise issues one with `issue` and stores `build` of it.
async fn keep_or_issue(
    t: &Target<'_>,
    name: &str,
    read: impl Fn(&Secret) -> Option<Pem>,
    keep: impl Fn(&Pem) -> Option<CertInfo>,
    issue: impl FnOnce() -> Result<Pem, TlsError>,
    build: impl Fn(&Pem) -> Secret,
) -> Result<Kept> {
    // Keeping what is stored, as it is stored, needs no request; anything else is decided on the
    // live Secret (the cache may not have the operator's own last write yet).
    let keeps = |s: &Secret| {
        let pem = read(s)?;
        keep(&pem)?;
        let desired = build(&pem);
        (s.data == desired.data && s.type_ == desired.type_).then_some(())
    };
    let secret = current(t, name, false, |s: Option<&Secret>| s.and_then(keeps).is_none()).await?;
    let stored = secret.as_ref().and_then(&read);
    if let Some((pem, info)) = stored.as_ref().and_then(|p| Some((p.clone(), keep(p)?))) {
        let desired = build(&pem);
        if secret.as_ref().is_some_and(|s| s.data != desired.data || s.type_ != desired.type_) {
            apply(t, &desired).await?;
            t.normal(reason::SECRET_RESTORED, format!("Secret {name} was edited; its content was put back")).await;
        }
        return Ok(Kept { pem, info, issued: false, replaced: false, before: secret });
    }
    let pem = issue()?;
    apply(t, &build(&pem)).await?;
    let info = tls::inspect(&pem.cert)?;
    Ok(Kept { pem, info, issued: true, replaced: stored.is_some(), before: secret })
}

/// A leaf that is signed by `ca` and not due for renewal.
fn usable(leaf: &Pem, ca: &Pem, now: i64) -> Option<CertInfo> {
    let info = tls::inspect(&leaf.cert).ok()?;
    (!tls::needs_renewal(&info, now) && tls::is_signed_by(&leaf.cert, &ca.cert)).then_some(info)
}

/// Ensures the three secrets; returns the material in use.
pub async fn ensure(t: &Target<'_>, plan: &Plan, svc: &Service) -> Result<Material> {
    let (dsb, names) = (t.dsb, &t.names);
    let now = tls::now();
    let unix = now.unix_timestamp();
    let days = t.ctx.config.cert_validity_days;
    let who = format!("{}/{}", names.namespace, dsb.name_any());

    // A CA issued for another credentials generation is revoked: issuing a new one makes every
    // certificate signed by the old one useless.
    let wanted = plan.credentials_generation;
    let ca_valid = |ca: &Pem| tls::inspect(&ca.cert).ok().filter(|i| !tls::needs_renewal(i, unix));
    let ca = keep_or_issue(
        t,
        &names.ca_secret,
        |s: &Secret| (secret::generation(s) == wanted).then(|| secret::ca_pem(s)).flatten(),
        ca_valid,
        || tls::new_ca(&format!("dockersandbox CA {who}"), now),
        |ca| secret::ca(dsb, ca, wanted),
    )
    .await?;
    let revoked = ca.before.as_ref().map(secret::generation).is_some_and(|g| g != wanted);
    if ca.issued && revoked {
        let note = format!(
            "spec.credentials.generation is {wanted}: issued a new CA, server and client certificate; the engine that \
             trusts the old CA is stopped now (CredentialsRevoked follows once the engine answers with the new CA); \
             clients must fetch the new client Secret {}",
            names.client_secret
        );
        t.normal(reason::CREDENTIALS_ROTATING, note).await;
    } else if ca.issued && (ca.replaced || live::<Secret>(t, &names.client_secret, false).await?.is_some()) {
        let note = format!(
            "the CA in Secret {} was missing, invalid or expiring, so a new CA was issued; clients must use the new client Secret {}",
            names.ca_secret, names.client_secret
        );
        t.warning(reason::CA_REGENERATED, note).await;
    }

    let sans = tls::server_sans(
        &names.service,
        &names.namespace,
        &t.ctx.config.cluster_domain,
        &service::addresses(svc),
        &plan.service.extra_sans,
    );
    let server_ok = |l: &Pem| usable(l, &ca.pem, unix).filter(|i| tls::normalize(i.sans.clone()) == sans);
    let server = keep_or_issue(
        t,
        &names.server_secret,
        secret::leaf,
        server_ok,
        || tls::issue_server(&ca.pem, &names.server_name(), &sans, days, now),
        |leaf| secret::server(dsb, &ca.pem.cert, leaf),
    )
    .await?;
    if server.issued {
        let note = format!("issued the engine's server certificate for {}", sans.join(", "));
        t.normal(reason::SERVER_CERTIFICATE_ISSUED, note).await;
    }

    let client = keep_or_issue(
        t,
        &names.client_secret,
        secret::leaf,
        |l: &Pem| usable(l, &ca.pem, unix),
        || tls::issue_client(&ca.pem, &format!("dockersandbox client {who}"), days, now),
        |leaf| secret::client(dsb, &ca.pem.cert, leaf),
    )
    .await?;
    if client.issued {
        let note = format!("issued the client certificate in Secret {}", names.client_secret);
        t.normal(reason::CLIENT_CERTIFICATE_ISSUED, note).await;
    }

    let status = CertificateStatus {
        ca_not_after: tls::rfc3339(ca.info.not_after),
        server_not_after: tls::rfc3339(server.info.not_after),
        client_not_after: tls::rfc3339(client.info.not_after),
        generation: wanted,
    };
    Ok(Material { ca: ca.pem, server: server.pem, client: client.pem, status })
}

/// The ClusterIP the server certificate was issued for, if a server certificate exists: its IP
/// SANs other than loopback and the plan's extra SANs.
pub async fn previous_cluster_ip(t: &Target<'_>, plan: &Plan) -> Result<Option<String>> {
    let server = current::<Secret>(t, &t.names.server_secret, false, |_| false).await?;
    let Some(leaf) = server.and_then(|s| secret::leaf(&s)) else {
        return Ok(None);
    };
    let Ok(info) = tls::inspect(&leaf.cert) else { return Ok(None) };
    Ok(info.sans.into_iter().find(|san| {
        san.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()) && !plan.service.extra_sans.contains(san)
    }))
}
