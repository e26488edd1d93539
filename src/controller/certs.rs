//! Step: keeps a sandbox's CA, server and client certificates present, valid and renewed. Only
//! what is missing, invalid or due for renewal is issued; the CA is replaced only when it is gone or
//! expiring, and then loudly (a Warning event), because tenants must fetch the new client Secret.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::ResourceExt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::apply::{Child, Made};
use super::context::Target;
use crate::crd::CertificateStatus;
use crate::crd::conditions::reason;
use crate::error::Result;
use crate::plan::Plan;
use crate::resources::{secret, service};
use crate::tls::{self, CertInfo, Pem, TlsError};
use time::OffsetDateTime;

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

/// Keeps the certificate stored in the Secret `child` while `keep` accepts it, putting the Secret
/// back to `build(pem)` if its content was edited (a tampered `ca.pem` in the client bundle does not
/// replace the CA); otherwise issues one with `issue` and stores `build` of it.
async fn keep_or_issue(
    t: &Target<'_>,
    child: Child<'_, '_, Secret>,
    read: impl Fn(&Secret) -> Option<Pem>,
    keep: impl Fn(&Pem) -> Option<CertInfo>,
    issue: impl Fn() -> Result<Pem, TlsError>,
    build: impl Fn(&Pem) -> Secret,
) -> Result<Kept> {
    let mut secret = child.observed()?;
    loop {
        let stored = secret.as_ref().and_then(&read);
        if let Some((pem, info)) = stored.as_ref().and_then(|p| Some((p.clone(), keep(p)?))) {
            let desired = build(&pem);
            if secret.as_ref().is_some_and(|s| s.data != desired.data || s.type_ != desired.type_) {
                child.apply(&desired).await?;
                let note = format!("Secret {} was edited; its content was put back", desired.name_any());
                t.normal(reason::SECRET_RESTORED, note).await;
            }
            return Ok(Kept { pem, info, issued: false, replaced: false, before: secret });
        }
        let pem = issue()?;
        let desired = build(&pem);
        if secret.is_some() {
            child.apply(&desired).await?;
        } else if let Made::Found(found) = child.create(&desired).await? {
            // The sandbox's own Secret, out of the caches' sight (its labels were removed): what
            // it holds decides, as if the cache had it.
            secret = Some(found);
            continue;
        }
        let info = tls::inspect(&pem.cert)?;
        return Ok(Kept { pem, info, issued: true, replaced: stored.is_some(), before: secret });
    }
}

/// A leaf that is signed by `ca` and not due for renewal.
fn usable(leaf: &Pem, ca: &Pem, now: i64) -> Option<CertInfo> {
    let info = tls::inspect(&leaf.cert).ok()?;
    (!tls::needs_renewal(&info, now) && tls::is_signed_by(&leaf.cert, &ca.cert)).then_some(info)
}

/// The sandbox's CA as kept or issued by `authority`, for `leaves`.
pub struct Authority {
    ca: Kept,
    now: OffsetDateTime,
}

/// Who the certificates are for, in their subjects and messages.
fn who(t: &Target<'_>) -> String {
    format!("{}/{}", t.names.namespace, t.dsb.name_any())
}

/// The first step of the certificates: keeps or issues the CA. It needs nothing of the Service, so
/// it runs while the Service is made.
pub async fn authority(t: &Target<'_>, plan: &Plan) -> Result<Authority> {
    let (dsb, names) = (t.dsb, &t.names);
    let now = tls::now();
    let unix = now.unix_timestamp();
    let who = who(t);

    // The CA key lives in the operator's namespace, named by the sandbox's namespace and uid, with
    // no owner (owners cannot cross namespaces): its labels say whose it is, and the operator
    // deletes it once no sandbox has that uid. A CA issued for another credentials generation is
    // revoked: issuing a new one makes every certificate signed by the old one useless.
    let wanted = plan.credentials_generation;
    let ca_ns = t.ctx.config.ca_namespace();
    let uid = dsb.metadata.uid.clone().unwrap_or_default();
    let ours = move |meta: &ObjectMeta| match meta.labels.as_ref().and_then(|l| l.get(secret::SANDBOX_UID_LABEL)) {
        Some(u) if *u == uid => Ok(()),
        _ => Err("its labels name another sandbox".to_string()),
    };
    let ca_valid = |ca: &Pem| tls::inspect(&ca.cert).ok().filter(|i| !tls::needs_renewal(i, unix));
    // A CA from before the key moved (in NAME-ca, with its key) is moved, not replaced.
    let legacy = match t.ctx.caches.get::<Secret>(Some(ca_ns), &names.ca_key_secret) {
        Some(_) => None,
        None => legacy_ca(t, wanted)?.filter(|ca| ca_valid(ca).is_some()),
    };
    let moved = legacy.is_some();
    let mut ca = keep_or_issue(
        t,
        Child::owned_by(t, ca_ns, &names.ca_key_secret, Box::new(ours)),
        |s: &Secret| (secret::generation(s) == wanted).then(|| secret::ca_pem(s)).flatten(),
        ca_valid,
        || legacy.clone().map_or_else(|| tls::new_ca(&format!("dockersandbox CA {who}"), now), Ok),
        |ca| secret::ca_key(dsb, ca, wanted, ca_ns),
    )
    .await?;
    if ca.issued && moved {
        ca.issued = false;
        let note = format!(
            "moved the CA key out of Secret {} into the operator's namespace {ca_ns}; the CA is unchanged",
            names.ca_secret
        );
        t.normal(reason::CA_KEY_MOVED, note).await;
    }
    let revoked = ca.before.as_ref().map(secret::generation).is_some_and(|g| g != wanted);
    if ca.issued && revoked {
        let note = format!(
            "spec.credentials.generation is {wanted}: issued a new CA, server and client certificate; the engine that \
             trusts the old CA is stopped now (CredentialsRevoked follows once the engine answers with the new CA); \
             clients must fetch the new client Secret {}",
            names.client_secret
        );
        t.normal(reason::CREDENTIALS_ROTATING, note).await;
    } else if ca.issued && (ca.replaced || Child::<Secret>::of(t, &names.client_secret).observed()?.is_some()) {
        let note = format!(
            "the CA key of this sandbox was missing, invalid or expiring, so a new CA was issued; clients must use the \
             new client Secret {}",
            names.client_secret
        );
        t.warning(reason::CA_REGENERATED, note).await;
    }
    Ok(Authority { ca, now })
}

/// The second step: the public CA Secret, the server certificate (for the Service's names and
/// address) and the client certificate, at once; returns the material in use.
pub async fn leaves(t: &Target<'_>, plan: &Plan, svc: &Service, authority: Authority) -> Result<Material> {
    let (dsb, names) = (t.dsb, &t.names);
    let Authority { ca, now } = authority;
    let unix = now.unix_timestamp();
    let days = t.ctx.config.cert_validity_days;
    let who = who(t);
    let wanted = plan.credentials_generation;
    let pooled = crate::crd::pooled(dsb);
    let mut extra = plan.service.extra_sans.clone();
    if pooled {
        extra.extend(tls::pooled_sans(&names.namespace, &t.ctx.config.cluster_domain));
    }
    let sans = tls::server_sans(
        &names.service,
        &names.namespace,
        &t.ctx.config.cluster_domain,
        &service::addresses(svc),
        &extra,
    );
    let server_ok = |l: &Pem| usable(l, &ca.pem, unix).filter(|i| tls::normalize(i.sans.clone()) == sans);
    let server = keep_or_issue(
        t,
        Child::of(t, &names.server_secret),
        secret::leaf,
        server_ok,
        || tls::issue_server(&ca.pem, &names.server_name(), &sans, days, now),
        |leaf| secret::server(dsb, &ca.pem.cert, leaf),
    );
    let client = async {
        if !pooled {
            return keep_or_issue(
                t,
                Child::of(t, &names.client_secret),
                secret::leaf,
                |l: &Pem| usable(l, &ca.pem, unix),
                || tls::issue_client(&ca.pem, &format!("dockersandbox client {who}"), days, now),
                |leaf| secret::client(dsb, &ca.pem.cert, leaf),
            )
            .await;
        }
        // A pooled engine: the operator's own client certificate, in memory only.
        let key = (names.namespace.clone(), dsb.name_any());
        let pem = t.ctx.pooled_client(
            key,
            &ca.pem.cert,
            |l| usable(l, &ca.pem, unix).is_some(),
            || tls::issue_client(&ca.pem, &format!("dockersandbox operator {who}"), days, now),
        )?;
        let info = tls::inspect(&pem.cert)?;
        Ok(Kept { pem, info, issued: false, replaced: false, before: None })
    };
    // Three independent writes, sent together; the first error in this order is the one told.
    let (public, server, client) = futures::join!(public_ca(t, &ca.pem.cert, wanted), server, client);
    let (server, client) = (public.and(server)?, client?);
    // A sandbox's first certificates are routine (no Event); a new one in place of another is news.
    if server.issued && server.replaced {
        let note = format!("issued the engine's server certificate for {}", sans.join(", "));
        t.normal(reason::SERVER_CERTIFICATE_ISSUED, note).await;
    }
    if client.issued && client.replaced {
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

/// A claimant's certificates: `NAME-ca` with the claimed engine's CA certificate, and the client
/// certificate in `NAME-client`, of that CA (kept while valid, issued at claim time). The claimant
/// has no CA or server certificate of its own: the engine it claimed serves its. Returns the
/// client certificate's expiry.
pub async fn claimant(t: &Target<'_>, ca: &Pem, generation: i64) -> Result<String> {
    let (dsb, names) = (t.dsb, &t.names);
    let now = tls::now();
    let unix = now.unix_timestamp();
    let days = t.ctx.config.cert_validity_days;
    let who = who(t);
    let client = keep_or_issue(
        t,
        Child::of(t, &names.client_secret),
        secret::leaf,
        |l: &Pem| usable(l, ca, unix),
        || tls::issue_client(ca, &format!("dockersandbox client {who}"), days, now),
        |leaf| secret::client(dsb, &ca.cert, leaf),
    );
    let (public, client) = futures::join!(public_ca(t, &ca.cert, generation), client);
    let client = public.and(client)?;
    if client.issued && client.replaced {
        let note = format!("issued the client certificate in Secret {}", names.client_secret);
        t.normal(reason::CLIENT_CERTIFICATE_ISSUED, note).await;
    }
    Ok(tls::rfc3339(client.info.not_after))
}

/// The CA of a sandbox from before CA keys moved to the operator's namespace: `NAME-ca` with its
/// key, for credentials generation `wanted`. Read from the cache (`NAME-ca` is a labelled child).
fn legacy_ca(t: &Target<'_>, wanted: i64) -> Result<Option<Pem>> {
    let old = Child::<Secret>::of(t, &t.names.ca_secret).observed()?;
    Ok(old.filter(|s| secret::generation(s) == wanted).and_then(|s| secret::ca_pem(&s)))
}

/// Keeps `NAME-ca` in the sandbox's namespace as the CA certificate alone (a key left there from
/// before is removed: server-side apply drops the field the operator no longer sets).
async fn public_ca(t: &Target<'_>, ca_cert: &str, generation: i64) -> Result<()> {
    let desired = secret::ca(t.dsb, ca_cert, generation);
    let same = |s: &Secret| s.data == desired.data && secret::generation(s) == generation;
    let child = Child::of(t, &t.names.ca_secret);
    child.ensure_if(&desired, child.observed()?, same).await?;
    Ok(())
}

/// The ClusterIP the server certificate was issued for, if a server certificate exists: its IP
/// SANs other than loopback and the plan's extra SANs.
pub fn previous_cluster_ip(t: &Target<'_>, plan: &Plan) -> Result<Option<String>> {
    let server = Child::<Secret>::of(t, &t.names.server_secret).observed()?;
    let Some(leaf) = server.and_then(|s| secret::leaf(&s)) else {
        return Ok(None);
    };
    let Ok(info) = tls::inspect(&leaf.cert) else { return Ok(None) };
    Ok(info.sans.into_iter().find(|san| {
        san.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()) && !plan.service.extra_sans.contains(san)
    }))
}
