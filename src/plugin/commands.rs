//! The smaller commands: `env`, `bundle`, `ls`, `logs`, `df`, `prune` and `completion`. Their
//! output is built by pure functions, tested without a cluster.

use std::io::Write;
use std::path::Path;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};

use super::cli::{BundleArgs, Cli, CompletionArgs, EnvArgs, EnvFormat, Global, LogsArgs, LsArgs, PruneArgs, Target};
use super::cluster::{Cluster, ready_condition};
use super::connect::{Local, direct_address};
use super::error::{Error, Result, api, is_not_found};
use super::files;
use crate::controller::probe;
use crate::crd::{DockerSandbox, DockerSandboxClass};
use crate::resources::Names;

/// `kubectl dsb env NAME`: the exports for the tunnel that runs, else for the ClusterIP when it is
/// reachable from here; writes the certificates they point at.
pub async fn env(global: &Global, args: &EnvArgs) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let dsb = cluster.ready_sandbox(&args.target.name).await?;
    let names = Names::of(&dsb);
    let local = Local::of(&names.namespace, &names.service)?;
    let host = match local.running_tunnel() {
        Some((_, host)) => host,
        None => match direct_address(&cluster, &dsb).await? {
            Some(addr) => files::tcp_host(addr),
            None => {
                return Err(Error::Other(format!(
                    "the engine of {ns}/{n} is not reachable from here (no TCP connection to its Service's ClusterIP) \
                     and no tunnel runs: start one with `kubectl dsb connect {n} -n {ns} --background`, then run env again",
                    ns = names.namespace,
                    n = names.service
                )));
            }
        },
    };
    files::write_bundle(&local.dir, &cluster.client_certs(&dsb).await?)?;
    print!("{}", env_text(args.format, &host, &local.dir));
    Ok(())
}

/// The three variables a docker client needs, as `export` lines or JSON.
pub fn env_text(format: EnvFormat, host: &str, cert_path: &Path) -> String {
    let vars = [
        ("DOCKER_HOST", host.to_string()),
        ("DOCKER_TLS_VERIFY", "1".into()),
        ("DOCKER_CERT_PATH", cert_path.display().to_string()),
    ];
    match format {
        EnvFormat::Sh => vars.iter().map(|(k, v)| format!("export {k}={}\n", sh_quote(v))).collect(),
        EnvFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                vars.into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect();
            format!("{}\n", serde_json::Value::Object(map))
        }
    }
}

/// `value` quoted for sh (single quotes; an embedded quote becomes '\'').
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `kubectl dsb bundle NAME DIR`.
pub async fn bundle(global: &Global, args: &BundleArgs) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let dsb = cluster.sandbox(&args.target.name).await?;
    files::write_bundle(&args.dir, &cluster.client_certs(&dsb).await?)?;
    let names = Names::of(&dsb);
    println!(
        "Wrote {dir}/ca.pem, cert.pem and key.pem (0600): the client certificate of {}/{}.\n\
         export DOCKER_HOST={} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={dir}",
        names.namespace,
        names.service,
        names.endpoint(),
        dir = args.dir.display()
    );
    Ok(())
}

/// `kubectl dsb ls [-A]`.
pub async fn ls(global: &Global, args: &LsArgs) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let api: Api<DockerSandbox> = match args.all_namespaces {
        true => Api::all(cluster.client.clone()),
        false => cluster.api(),
    };
    let scope = if args.all_namespaces { "all namespaces".to_string() } else { cluster.namespace.clone() };
    let list = api.list(&ListParams::default()).await.map_err(api_list(&scope))?;
    if list.items.is_empty() {
        eprintln!(
            "No DockerSandboxes found in {}.",
            if args.all_namespaces { scope } else { format!("namespace {scope}") }
        );
        return Ok(());
    }
    print!("{}", table(&list.items, args.all_namespaces, jiff::Timestamp::now()));
    Ok(())
}

fn api_list(scope: &str) -> impl FnOnce(kube::Error) -> Error + use<> {
    let scope = scope.to_string();
    move |e| match api("list", "dockersandboxes", "", &scope)(e) {
        Error::Forbidden { message, .. } => Error::Other(format!("cannot list dockersandboxes in {scope}: {message}")),
        Error::Api { message, .. } => Error::Other(format!("cannot list dockersandboxes in {scope}: {message}")),
        other => other,
    }
}

/// The `ls` table: columns aligned, the namespace first with `-A`.
pub fn table(items: &[DockerSandbox], with_namespace: bool, now: jiff::Timestamp) -> String {
    const COLUMNS: [&str; 11] = [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "ISOLATION",
        "ENDPOINT",
        "VERSION",
        "DISK",
        "CONTAINERS",
        "IDLE",
        "EXPIRES",
        "AGE",
    ];
    let mut rows = vec![COLUMNS.map(String::from).to_vec()];
    for dsb in items {
        let status = dsb.status.clone().unwrap_or_default();
        let dash = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
        let cells = [
            dsb.metadata.namespace.clone().unwrap_or_default(),
            dsb.metadata.name.clone().unwrap_or_default(),
            dash(status.phase.map(|p| p.as_str().to_string())),
            dash(status.isolation.clone()),
            dash(status.endpoint.clone()),
            dash(status.docker_version.clone()),
            dash(disk(&status.engine)),
            dash(status.engine.as_ref().map(|e| format!("{}/{}", e.containers_running, e.containers))),
            dash(idle(&status, now)),
            dash(status.expires_at.as_deref().and_then(|t| t.parse().ok()).map(|at| expires(now, at))),
            dsb.metadata.creation_timestamp.as_ref().map_or("-".into(), |t| age(now, t.0)),
        ];
        rows.push(cells.iter().map(|cell| super::printable(cell)).collect());
    }
    let skip = usize::from(!with_namespace);
    let n = COLUMNS.len();
    let widths: Vec<usize> = (0..n).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = (skip..n).map(|c| format!("{:w$}", row[c], w = widths[c])).collect();
        out += cells.join("   ").trim_end();
        out.push('\n');
    }
    out
}

/// The IDLE cell: how long the engine has been idle, or why it is suspended (`idle 2h`,
/// `suspended`, `expired`).
fn idle(status: &crate::crd::DockerSandboxStatus, now: jiff::Timestamp) -> Option<String> {
    use crate::crd::SuspendCause;
    if let Some(s) = &status.suspension {
        let since = s.since.parse().ok().map(|t| age(now, t)).unwrap_or_default();
        return Some(match s.cause {
            SuspendCause::Idle => format!("suspended {since}"),
            SuspendCause::Spec => "suspended (spec)".into(),
            SuspendCause::Expiry => "expired".into(),
        });
    }
    status.idle_since.as_deref().and_then(|t| t.parse().ok()).map(|t| age(now, t))
}

/// The EXPIRES cell: in how long (`in 3h`), or `expired`.
fn expires(now: jiff::Timestamp, at: jiff::Timestamp) -> String {
    if at <= now { "expired".into() } else { format!("in {}", age(at, now)) }
}

/// The DISK cell: the used percent of the volume and the bytes (`42% 8.4Gi`), or the bytes alone
/// when the volume has no size.
fn disk(engine: &Option<crate::crd::EngineStatus>) -> Option<String> {
    let d = engine.as_ref()?.disk.as_ref()?;
    Some(match d.used_percent {
        Some(p) => format!("{p}% {}", bytes(d.used_bytes)),
        None => bytes(d.used_bytes),
    })
}

pub use crate::controller::gc::bytes;

/// A verified connection to the sandbox's engine through the API server (port-forward to its pod),
/// with the tenant's client certificate.
async fn engine(cluster: &Cluster, dsb: &DockerSandbox) -> Result<probe::EngineSession> {
    let certs = cluster.client_certs(dsb).await?;
    let names = Names::of(dsb);
    let client = crate::tls::Pem { cert: certs.cert.clone(), key: certs.key.clone() };
    let route = probe::Route::PortForward(Box::new(cluster.api::<Pod>()), Names::engine_pod(dsb));
    probe::open(route, &names.server_name(), &certs.ca, &client)
        .await
        .map_err(|e| Error::Other(format!("cannot reach the engine of {}/{}: {e}", names.namespace, names.service)))
}

/// The volume's size, as the operator last read it.
fn capacity(dsb: &DockerSandbox) -> Option<i64> {
    dsb.status.as_ref()?.engine.as_ref()?.disk.as_ref()?.capacity_bytes
}

/// `df NAME`.
pub async fn df(global: &Global, target: &Target) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let dsb = cluster.ready_sandbox(&target.name).await?;
    let facts = engine(&cluster, &dsb).await?.facts().await.map_err(Error::Other)?;
    print!("{}", df_table(&facts, capacity(&dsb)));
    Ok(())
}

/// The `df` table.
pub fn df_table(f: &probe::Facts, capacity: Option<i64>) -> String {
    let Ok(d) = &f.disk else {
        return format!("dockerd could not account for its disk: {}\n", f.disk.as_ref().err().map_or("", |e| e));
    };
    let total = match capacity {
        Some(c) if c > 0 => format!("{}% of {}", crate::controller::gc::percent(d.used(), c), bytes(c)),
        _ => "the volume has no size limit".into(),
    };
    let rows = [
        ("TYPE", "SIZE".to_string(), String::new()),
        ("Images", bytes(d.images), format!("{} images", f.images)),
        ("Containers", bytes(d.containers), format!("{} running of {}", f.containers_running, f.containers)),
        ("Volumes", bytes(d.volumes), String::new()),
        ("Build cache", bytes(d.build_cache), String::new()),
        ("Total", bytes(d.used()), total),
    ];
    rows.iter().map(|(a, b, c)| format!("{a:<12} {b:<8} {c}").trim_end().to_string() + "\n").collect()
}

/// `prune NAME`.
pub async fn prune(global: &Global, args: &PruneArgs) -> Result<()> {
    use crate::controller::gc;
    let cluster = Cluster::new(global).await?;
    let dsb = cluster.ready_sandbox(&args.target.name).await?;
    let Some(capacity) = capacity(&dsb) else {
        return Err(Error::Other(
            "the volume's size is not known yet (status.engine.disk.capacityBytes): try again once the operator has \
             read the engine"
                .into(),
        ));
    };
    // The class's marks when this user may read the class, else garbage collection's defaults.
    let class = dsb.status.as_ref().and_then(|s| s.class_name.clone()).unwrap_or_default();
    let from_class = match cluster.api_all::<DockerSandboxClass>().get(&class).await {
        Ok(c) => c.spec.disk.gc,
        Err(_) => None,
    };
    let mut policy = from_class.unwrap_or_default();
    if let Some(to) = args.to {
        policy.low_percent = to;
    }
    let target = gc::target(&policy, capacity);
    let goal = policy.low_percent;
    let mut engine = engine(&cluster, &dsb).await?;
    let disk = engine.facts().await.map_err(Error::Other)?.disk.map_err(Error::Other)?;
    let used = gc::percent(disk.used(), capacity);
    if disk.used() <= target {
        println!("Nothing to prune: dockerd uses {used}% of the volume, at or below {goal}%.");
        return Ok(());
    }
    if args.dry_run {
        let plan = engine.prune_plan(&policy, disk, target).await.map_err(Error::Other)?;
        println!("dockerd uses {used}% of the volume; pruning down to {goal}% would remove, in this order:");
        for line in plan {
            println!("  {}", super::printable(&line));
        }
        return Ok(());
    }
    let run = engine.collect_garbage(&policy, disk, target).await;
    println!("{}", super::printable(&run.describe(capacity)));
    Ok(())
}

/// kubectl's short age: 45s, 12m, 5h, 3d.
pub fn age(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `kubectl dsb logs NAME`: the dockerd container's log of pod NAME-engine.
pub async fn logs(global: &Global, args: &LogsArgs) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let dsb = cluster.sandbox(&args.target.name).await?;
    let names = Names::of(&dsb);
    let params = LogParams {
        container: Some("dockerd".into()),
        follow: args.follow,
        tail_lines: args.tail,
        previous: args.previous,
        ..LogParams::default()
    };
    let pods: Api<Pod> = cluster.api();
    let pod = Names::engine_pod(&dsb);
    let stream = pods.log_stream(&pod, &params).await.map_err(|e| match e {
        e if is_not_found(&e) => Error::Other(format!(
            "the sandbox {}/{} has no engine pod {} now; its {}",
            names.namespace,
            names.service,
            pod,
            ready_condition(&dsb)
        )),
        e => api("get", "pods/log", &pod, &names.namespace)(e),
    })?;
    let mut lines = stream.lines();
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = lines.try_next().await.map_err(|e| Error::Other(format!("reading the log: {e}")))? {
        if writeln!(stdout, "{}", super::printable(&line)).is_err() {
            break; // e.g. `| head`
        }
    }
    Ok(())
}

/// `kubectl dsb completion SHELL`.
pub fn completion(args: &CompletionArgs) {
    use clap::CommandFactory;
    clap_complete::generate(args.shell, &mut Cli::command(), "kubectl-dsb", &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_for_shells_and_json() {
        let sh = env_text(EnvFormat::Sh, "tcp://127.0.0.1:12376", Path::new("/home/a b/.docker/dsb/ns/web"));
        assert_eq!(
            sh,
            "export DOCKER_HOST='tcp://127.0.0.1:12376'\nexport DOCKER_TLS_VERIFY='1'\nexport DOCKER_CERT_PATH='/home/a b/.docker/dsb/ns/web'\n"
        );
        let json = env_text(EnvFormat::Json, "tcp://10.96.0.5:2376", Path::new("/c"));
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"DOCKER_HOST": "tcp://10.96.0.5:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"})
        );
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn ages_like_kubectl() {
        let now = jiff::Timestamp::from_second(1_000_000).expect("ts");
        let ago = |s: i64| age(now, jiff::Timestamp::from_second(1_000_000 - s).expect("ts"));
        assert_eq!(
            [ago(0), ago(119), ago(120), ago(7199), ago(7200), ago(172_799), ago(172_800)],
            ["0s", "119s", "2m", "119m", "2h", "47h", "2d"]
        );
    }

    #[test]
    fn df_table_reads_like_docker_system_df_against_the_volume() {
        let facts = probe::Facts {
            containers_running: 2,
            containers: 3,
            images: 4,
            disk: Ok(probe::Disk { images: 3 << 30, containers: 5 << 20, volumes: 0, build_cache: 1 << 30 }),
            last_activity: None,
            until: 0,
        };
        assert_eq!(
            df_table(&facts, Some(20 << 30)),
            "TYPE         SIZE\n\
             Images       3.0Gi    4 images\n\
             Containers   5.0Mi    2 running of 3\n\
             Volumes      0B\n\
             Build cache  1.0Gi\n\
             Total        4.0Gi    20% of 20Gi\n"
        );
        assert!(df_table(&facts, None).ends_with("Total        4.0Gi    the volume has no size limit\n"));
        let unread = probe::Facts { disk: Err("df took too long".into()), ..facts };
        assert_eq!(df_table(&unread, None), "dockerd could not account for its disk: df took too long\n");
    }

    #[test]
    fn ls_table() {
        let yaml = |name: &str, ns: &str, status: &str| -> DockerSandbox {
            serde_saphyr::from_str(&format!(
                "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: '1970-01-01T00:00:00Z'}}\nspec: {{}}\nstatus: {status}\n"
            ))
            .expect("fixture")
        };
        let items = [
            yaml(
                "web",
                "team-a",
                "{phase: Ready, isolation: privileged, endpoint: 'tcp://web.team-a.svc:2376', dockerVersion: 26.1.5, \
                 engine: {containersRunning: 2, containers: 5, images: 3, observedAt: '1970-01-01T00:04:00Z', \
                 disk: {imagesBytes: 9000000000, containersBytes: 0, volumesBytes: 0, buildCacheBytes: 0, \
                 usedBytes: 9000000000, capacityBytes: 21474836480, usedPercent: 41}}, \
                 idleSince: '1970-01-01T00:02:00Z', expiresAt: '1970-01-01T03:05:00Z'}",
            ),
            yaml("ci", "b", "{phase: Pending}"),
            yaml("nap", "b", "{phase: Suspended, suspension: {cause: Idle, since: '1970-01-01T00:01:00Z'}}"),
        ];
        let now = jiff::Timestamp::from_second(300).expect("ts");
        assert_eq!(
            table(&items, false, now),
            "NAME   PHASE       ISOLATION    ENDPOINT                    VERSION   DISK        CONTAINERS   IDLE           EXPIRES   AGE\n\
             web    Ready       privileged   tcp://web.team-a.svc:2376   26.1.5    41% 8.4Gi   2/5          3m             in 3h     5m\n\
             ci     Pending     -            -                           -         -           -            -              -         5m\n\
             nap    Suspended   -            -                           -         -           -            suspended 4m   -         5m\n"
        );
        assert_eq!(
            [bytes(0), bytes(1023), bytes(3277), bytes(15 << 30), bytes(-1)],
            ["0B", "1023B", "3.2Ki", "15Gi", "0B"]
        );
        assert!(table(&items, true, now).starts_with("NAMESPACE   NAME   PHASE"));
        assert!(table(&items, true, now).contains("\nteam-a      web    Ready"));
        assert_eq!(expires(now, jiff::Timestamp::from_second(200).expect("ts")), "expired");
    }
}
