//! Asks dockerd itself, over mutual TLS with the tenant's client certificate, whether it answers.
//! Pod readiness alone is not enough: this is what a client would see.
//!
//! An engine runs its tenant's code, so this client trusts it for nothing: it dials the address of
//! the pod the operator owns (never a Service, whose endpoints any pod wearing the right labels can
//! join), every step has its own timeout, every body is capped at `MAX_BODY`, and only a short,
//! printable version string is taken from the answer.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::gc;
use crate::crd::DiskGc;
use crate::resources::DOCKER_TLS_PORT;
use crate::tls::{self, Pem};

/// The most the operator reads of one answer from an engine.
pub const MAX_BODY: usize = 16 * 1024;
/// The longest version string taken into status.
pub const MAX_VERSION: usize = 64;
/// Each step (connect, TLS, HTTP handshake, one request with its body) must finish within this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole check must finish within this.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

/// How to reach the engine.
pub enum Route {
    /// Dial the owned engine pod's IP directly (in the cluster).
    Direct(String),
    /// Tunnel through the API server to the owned pod, by name (works from outside the cluster).
    PortForward(Box<Api<Pod>>, String),
}

/// What dockerd said.
#[derive(Debug)]
pub struct Answer {
    /// Its version.
    pub version: String,
    /// What is inside it, when asked for (`facts_since`), or why it could not be read.
    pub facts: Option<Result<Facts, String>>,
    /// The disk garbage collection run, when the facts showed use above the class's high mark.
    pub gc: Option<gc::Run>,
}

/// Disk garbage collection to run when the facts show use above the high mark.
pub struct GcAsk<'a> {
    /// The class's policy.
    pub policy: &'a DiskGc,
    /// The volume's size in bytes.
    pub capacity: Option<i64>,
    /// Run only when use is above this many bytes: after a run that could not get below the high
    /// mark, the next runs wait until use grows (no Event per check for the same full disk).
    pub unless_at_most: Option<i64>,
}

/// Asks dockerd for `/_ping` and `/version`; returns the engine version or why it did not answer.
/// With `facts_since` (unix seconds; the end of the last read), it then reads what is inside the
/// engine too (`read_facts`); a failure there is in `Answer::facts`, the engine still answered.
/// The server certificate is verified for `server_name`, a Service DNS name, whatever the route.
pub async fn probe(
    route: Route,
    server_name: &str,
    ca_pem: &str,
    client: &Pem,
    facts_since: Option<i64>,
    gc: Option<GcAsk<'_>>,
) -> Result<Answer, String> {
    let mut engine = open(route, server_name, ca_pem, client).await?;
    let mut facts = match facts_since {
        Some(since) => Some(engine.facts_since(since).await),
        None => None,
    };
    let sender = &mut engine.session.sender;
    let mut run = None;
    if let (Some(Ok(f)), Some(ask)) = (facts.as_mut(), gc)
        && let (Ok(disk), Some(capacity)) = (&f.disk, ask.capacity)
        && ask.unless_at_most.is_none_or(|held| disk.used() > held)
        && gc::due(ask.policy, disk, Some(capacity))
    {
        let target = gc::target(ask.policy, capacity);
        let done = collect_garbage(sender, ask.policy, *disk, target).await;
        f.disk = Ok(done.after);
        run = Some(done);
    }
    Ok(Answer { version: engine.version.clone(), facts, gc: run })
}

/// `work`, or an error naming `what` when it takes longer than `STEP_TIMEOUT`.
async fn step<T>(what: &str, work: impl Future<Output = T>) -> Result<T, String> {
    let secs = STEP_TIMEOUT.as_secs();
    tokio::time::timeout(STEP_TIMEOUT, work).await.map_err(|_| format!("{what} took longer than {secs}s"))
}

/// An HTTP connection to dockerd; the driver task ends when it is aborted or dropped with it.
struct Session {
    sender: Sender,
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// TLS and HTTP over `stream`, `/_ping` and `/version`: the version, and the open session.
async fn talk<S>(
    stream: S,
    config: rustls::ClientConfig,
    name: ServerName<'static>,
) -> Result<(String, Session), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tls = step("TLS handshake", tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream))
        .await?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (sender, conn) = step("HTTP handshake", hyper::client::conn::http1::handshake(TokioIo::new(tls)))
        .await?
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let mut session = Session { sender, driver: tokio::spawn(conn) };
    let ping = get(&mut session.sender, "/_ping", MAX_BODY, STEP_TIMEOUT).await?;
    if ping.trim() != "OK" {
        return Err(format!("/_ping answered {:?}", printable(&ping, 32)));
    }
    let version = version_of(&get(&mut session.sender, "/version", MAX_BODY, STEP_TIMEOUT).await?)?;
    Ok((version, session))
}

/// The engine version in a `/version` answer, if it is a sane version string.
pub fn version_of(body: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Version")]
        version: Option<String>,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|e| format!("/version is not JSON: {e}"))?;
    let v = answer.version.ok_or("/version has no Version")?;
    let sane = !v.is_empty()
        && v.len() <= MAX_VERSION
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_' | b'~'));
    if sane { Ok(v) } else { Err(format!("/version's Version {:?} is not a version string", printable(&v, 32))) }
}

/// At most `max` characters of `s`, control characters dropped: engine text is safe to quote.
pub fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// GET `path`: its body, read within `limit` and capped at `cap` bytes.
async fn get(sender: &mut Sender, path: &str, cap: usize, limit: Duration) -> Result<String, String> {
    call(sender, hyper::Method::GET, path, cap, limit).await
}

/// `e` and its causes, `: `-separated (hyper's "operation was canceled" says little alone).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// Requests this process sent to engines (health checks, facts, garbage collection): the metric
/// `dockersandbox_engine_requests_total` itself.
pub static REQUESTS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// `method` on `path` without a body: the answer's body, read within `limit` and capped at `cap`
/// bytes; an answer that is not a success is an error quoting (a printable start of) its body.
async fn call(
    sender: &mut Sender,
    method: hyper::Method,
    path: &str,
    cap: usize,
    limit: Duration,
) -> Result<String, String> {
    REQUESTS.inc();
    let secs = limit.as_secs();
    let timed = |what: String| move |_| format!("{what} took longer than {secs}s");
    let req = hyper::Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    // The connection takes the next request only once it has finished with the last answer
    // (hyper cancels a request sent before: "connection was not ready"); wait for that first.
    let send = async {
        sender.ready().await?;
        sender.send_request(req).await
    };
    let res = tokio::time::timeout(limit, send)
        .await
        .map_err(timed(format!("{method} {path}")))?
        .map_err(|e| format!("{method} {path}: {}", chain(&e)))?;
    let status = res.status();
    let body = tokio::time::timeout(limit, Limited::new(res.into_body(), cap).collect())
        .await
        .map_err(timed(format!("reading {path}")))?
        .map_err(|e| format!("{method} {path}: {e} (the operator reads at most {cap} bytes)"))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        let said = if method == hyper::Method::GET { String::new() } else { format!(": {}", printable(&body, 160)) };
        return Err(format!("{method} {path} answered {status}{said}"));
    }
    Ok(body)
}

/// Each prune request must finish within this (dockerd deletes files).
const PRUNE_TIMEOUT: Duration = Duration::from_secs(30);
/// A garbage collection run starts no new step, and no new request of its image step, after this
/// long (so a run takes at most this plus one request's timeout and one disk measurement).
const GC_TIME: Duration = Duration::from_secs(90);
/// Unused images removed in one run at most (each is one request; the next run goes on).
const MAX_IMAGE_REMOVALS: usize = 32;

/// Prunes in the engine, step after step (`gc`'s order), until dockerd's accounted use is at most
/// `target` bytes; measures use after each step (what a step freed is what use fell by).
async fn collect_garbage(sender: &mut Sender, policy: &DiskGc, disk: Disk, target: i64) -> gc::Run {
    let started = tokio::time::Instant::now();
    let mut run = gc::Run { before: disk.used(), after: disk, ..gc::Run::default() };
    for step in [gc::BUILD_CACHE, gc::DANGLING_IMAGES, gc::UNUSED_IMAGES, gc::STOPPED_CONTAINERS, gc::VOLUMES] {
        let before = run.after.used();
        if before <= target || started.elapsed() > GC_TIME {
            break;
        }
        let done = match step {
            gc::UNUSED_IMAGES => {
                remove_unused_images(sender, before - target, &mut run.images_removed, started + GC_TIME).await
            }
            gc::VOLUMES if !policy.prune_volumes => break,
            _ => {
                let path = prune_path(step, policy, &run.after, before - target);
                call(sender, hyper::Method::POST, &path, MAX_INFO, PRUNE_TIMEOUT).await.map(|_| ())
            }
        };
        match get(sender, "/system/df", MAX_DF, DF_TIMEOUT).await.and_then(|b| disk_of(&b)) {
            Ok(after) => {
                run.steps.push((step, (before - after.used()).max(0)));
                run.after = after;
            }
            Err(e) => {
                run.error = Some(e);
                break;
            }
        }
        if let Err(e) = done {
            run.error = Some(e);
            break;
        }
    }
    run
}

/// The prune request of `step` (not the unused images, removed one by one): the build cache down
/// to what frees `needed` bytes, dangling images, stopped containers older than `minAge`, volumes
/// no container uses.
fn prune_path(step: &str, policy: &DiskGc, disk: &Disk, needed: i64) -> String {
    let filters = |f: serde_json::Value| gc::query_escape(&f.to_string());
    match step {
        gc::BUILD_CACHE => format!("/build/prune?keep-storage={}", gc::build_cache_keep(disk, needed)),
        gc::DANGLING_IMAGES => format!("/images/prune?filters={}", filters(serde_json::json!({"dangling": ["true"]}))),
        gc::STOPPED_CONTAINERS => {
            format!("/containers/prune?filters={}", filters(serde_json::json!({"until": [policy.min_age]})))
        }
        _ => format!("/volumes/prune?filters={}", filters(serde_json::json!({"all": ["true"]}))),
    }
}

/// Removes unused images, the longest unused first, until their own sizes add up to `needed`
/// bytes (at most `MAX_IMAGE_REMOVALS`, none started after `deadline`). An image a container was
/// created from in the meantime is refused by dockerd (no force is ever used) and skipped.
async fn remove_unused_images(
    sender: &mut Sender,
    needed: i64,
    removed: &mut usize,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let mut freed = 0i64;
    for image in unused_candidates(sender, deadline).await? {
        if freed >= needed || tokio::time::Instant::now() >= deadline {
            break;
        }
        match call(sender, hyper::Method::DELETE, &format!("/images/{}", image.id), MAX_INFO, PRUNE_TIMEOUT).await {
            Ok(_) => {
                *removed += 1;
                freed = freed.saturating_add(image.unique_size);
            }
            // In use by now (409), or gone (404): not ours to force.
            Err(e) if e.contains(" 409 ") || e.contains(" 404 ") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An image as `/images/json` lists it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    /// Only a well-formed id (`is_image_id`) is ever put into a request path.
    #[serde(default)]
    id: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    shared_size: i64,
}

/// `body`, an engine's answer to `what`, as JSON of `T`; the error quotes a printable start of
/// what was wrong.
fn json<T: serde::de::DeserializeOwned>(what: &str, body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("{what}: {}", printable(&e.to_string(), 120)))
}

/// The unused images (no container was created from them), longest unused first, at most
/// `MAX_IMAGE_REMOVALS` (when each was last tagged is read until `deadline`: a slow engine cannot
/// hold a run past it).
async fn unused_candidates(sender: &mut Sender, deadline: tokio::time::Instant) -> Result<Vec<gc::Image>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Container {
        #[serde(rename = "ImageID")]
        image_id: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Inspected {
        metadata: Option<Metadata>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Metadata {
        last_tag_time: Option<String>,
    }
    let containers: Vec<Container> =
        json("/containers/json", &get(sender, "/containers/json?all=1", MAX_DF, STEP_TIMEOUT).await?)?;
    let in_use = containers.into_iter().filter_map(|c| c.image_id).collect();
    let listed: Vec<Listed> =
        json("/images/json", &get(sender, "/images/json?shared-size=1", MAX_DF, STEP_TIMEOUT).await?)?;
    let mut images: Vec<gc::Image> = listed
        .into_iter()
        .filter(|i| is_image_id(&i.id))
        .map(|i| gc::Image {
            id: i.id,
            last_used: i.created,
            unique_size: i.size.max(0).saturating_sub(i.shared_size.max(0)),
        })
        .collect();
    images = gc::unused_images(images, &in_use);
    images.truncate(MAX_IMAGE_REMOVALS);
    // The time each was last tagged (pulled, loaded, built) is a better "last used" than when it
    // was built: read it for the candidates, then order again.
    for image in &mut images {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let inspected = get(sender, &format!("/images/{}/json", image.id), MAX_INFO, STEP_TIMEOUT).await?;
        let tagged = serde_json::from_str::<Inspected>(&inspected)
            .ok()
            .and_then(|i| i.metadata?.last_tag_time?.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second());
        image.last_used = image.last_used.max(tagged.unwrap_or(0));
    }
    Ok(gc::unused_images(images, &HashSet::new()))
}

/// What a run would prune, in order, without removing anything (`kubectl dsb prune --dry-run`):
/// one line per candidate with its size, and where the run would stop.
async fn prune_plan(sender: &mut Sender, policy: &DiskGc, disk: Disk, target: i64) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Stopped {
        #[serde(default)]
        created: i64,
    }
    let needed = disk.used() - target;
    let mut lines = vec![];
    let mut freed = 0i64;
    let mut add = |line: String, bytes: i64, lines: &mut Vec<String>| {
        lines.push(line);
        freed = freed.saturating_add(bytes.max(0));
        freed >= needed
    };
    let filters = |f: serde_json::Value| gc::query_escape(&f.to_string());
    let build = disk.build_cache - gc::build_cache_keep(&disk, needed);
    if build > 0 && add(format!("{:<12} {}", gc::bytes(build), gc::BUILD_CACHE), build, &mut lines) {
        return Ok(lines);
    }
    let dangling = format!("/images/json?filters={}", filters(serde_json::json!({"dangling": ["true"]})));
    let dangling: Vec<Listed> = json("/images/json", &get(sender, &dangling, MAX_DF, STEP_TIMEOUT).await?)?;
    let bytes: i64 = dangling.iter().map(|i| i.size.max(0)).fold(0, i64::saturating_add);
    if !dangling.is_empty()
        && add(format!("{:<12} {} ({})", gc::bytes(bytes), gc::DANGLING_IMAGES, dangling.len()), bytes, &mut lines)
    {
        return Ok(lines);
    }
    for image in unused_candidates(sender, tokio::time::Instant::now() + GC_TIME).await? {
        let when = jiff::Timestamp::from_second(image.last_used).map(|t| t.to_string()).unwrap_or_default();
        let line = format!("{:<12} unused image {} (last tagged {when})", gc::bytes(image.unique_size), image.id);
        if add(line, image.unique_size, &mut lines) {
            return Ok(lines);
        }
    }
    let stopped = format!(
        "/containers/json?all=1&filters={}",
        filters(serde_json::json!({"status": ["exited", "created", "dead"]}))
    );
    let stopped: Vec<Stopped> = json("/containers/json", &get(sender, &stopped, MAX_DF, STEP_TIMEOUT).await?)?;
    let age = min_age_secs(&policy.min_age);
    let now = jiff::Timestamp::now().as_second();
    let old = stopped.iter().filter(|c| c.created < now - age).count();
    if old > 0 {
        lines.push(format!("{:<12} {} older than {} ({old})", "?", gc::STOPPED_CONTAINERS, policy.min_age));
    }
    if policy.prune_volumes {
        lines.push(format!("{:<12} {} (the class allows it)", "?", gc::VOLUMES));
    }
    Ok(lines)
}

/// `minAge` (`30m`, `24h`, `90s`: what the class's schema allows) in seconds; anything else reads
/// as an hour.
fn min_age_secs(age: &str) -> i64 {
    age.parse::<jiff::SignedDuration>().map_or(3600, |d| d.as_secs())
}

/// An open, verified connection to one engine, for `kubectl dsb df` and `prune`.
pub struct EngineSession {
    session: Session,
    forward: Option<kube::api::Portforwarder>,
    /// The engine's version.
    pub version: String,
}

impl Drop for EngineSession {
    fn drop(&mut self) {
        if let Some(pf) = self.forward.take() {
            pf.abort();
        }
    }
}

impl EngineSession {
    /// What is inside the engine (the events of its last hour).
    pub async fn facts(&mut self) -> Result<Facts, String> {
        self.facts_since(jiff::Timestamp::now().as_second() - 3600).await
    }

    /// What is inside the engine, its events since `since` (unix seconds), within `FACTS_TIMEOUT`.
    async fn facts_since(&mut self, since: i64) -> Result<Facts, String> {
        tokio::time::timeout(FACTS_TIMEOUT, read_facts(&mut self.session.sender, since))
            .await
            .unwrap_or_else(|_| Err(format!("not read within {}s", FACTS_TIMEOUT.as_secs())))
    }

    /// Prunes as garbage collection does, down to `target` bytes.
    pub async fn collect_garbage(&mut self, policy: &DiskGc, disk: Disk, target: i64) -> gc::Run {
        collect_garbage(&mut self.session.sender, policy, disk, target).await
    }

    /// What pruning down to `target` bytes would remove, in order.
    pub async fn prune_plan(&mut self, policy: &DiskGc, disk: Disk, target: i64) -> Result<Vec<String>, String> {
        prune_plan(&mut self.session.sender, policy, disk, target).await
    }
}

/// Opens a connection to the engine over mutual TLS and checks that it answers (`/_ping`,
/// `/version`), within `CHECK_TIMEOUT`.
pub async fn open(route: Route, server_name: &str, ca_pem: &str, client: &Pem) -> Result<EngineSession, String> {
    let config = tls::client_config(ca_pem, client).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| format!("bad server name: {e}"))?;
    let mut forward = None;
    let connected = async {
        match route {
            Route::Direct(ip) => {
                let addr = ip.parse::<std::net::IpAddr>().map_err(|_| format!("the engine pod has no IP ({ip:?})"))?;
                let tcp = step("connect", tokio::net::TcpStream::connect((addr, DOCKER_TLS_PORT as u16)))
                    .await?
                    .map_err(|e| format!("cannot connect to {ip}:{DOCKER_TLS_PORT}: {e}"))?;
                talk(tcp, config, name).await
            }
            Route::PortForward(pods, pod) => {
                let mut pf = step("port-forward", pods.portforward(&pod, &[DOCKER_TLS_PORT as u16]))
                    .await?
                    .map_err(|e| format!("cannot port-forward to pod {pod}: {}", crate::error::plain(&e)))?;
                let stream = pf.take_stream(DOCKER_TLS_PORT as u16).ok_or("port-forward gave no stream")?;
                forward = Some(pf);
                talk(stream, config, name).await
            }
        }
    };
    let secs = CHECK_TIMEOUT.as_secs();
    let answered =
        tokio::time::timeout(CHECK_TIMEOUT, connected).await.map_err(|_| format!("no answer within {secs}s"));
    match answered {
        Ok(Ok((version, session))) => Ok(EngineSession { session, forward, version }),
        Ok(Err(e)) | Err(e) => {
            if let Some(pf) = forward {
                pf.abort();
            }
            Err(e)
        }
    }
}

/// Whether `id` is an image id as dockerd gives them (`sha256:` and 64 hex digits): anything else
/// an engine lists is not put into a request path.
fn is_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The most the operator reads of `/info`.
pub const MAX_INFO: usize = 256 * 1024;
/// The most it reads of `/system/df`, which lists every image, container, volume and build cache
/// record (a few hundred bytes each): 4 MiB is some ten thousand of them.
pub const MAX_DF: usize = 4 * 1024 * 1024;
/// The most it reads of `/events` since the last read (dockerd keeps its last 256 events; an
/// event carries its container's labels, so a tenant can make them large).
pub const MAX_EVENTS: usize = 512 * 1024;
/// Reading what is inside an engine must finish within this (`/system/df` walks its disk).
pub const FACTS_TIMEOUT: Duration = Duration::from_secs(20);
const DF_TIMEOUT: Duration = Duration::from_secs(12);

/// What is inside an engine, as dockerd accounts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Containers running.
    pub containers_running: i64,
    /// Containers in any state.
    pub containers: i64,
    /// Images.
    pub images: i64,
    /// Bytes by what holds them, or why dockerd could not say.
    pub disk: Result<Disk, String>,
    /// The newest container, image, build, volume or network event in the window read (unix seconds).
    pub last_activity: Option<i64>,
    /// Where the window of events read ended: the next read starts there.
    pub until: i64,
}

/// Bytes on the engine's volume (`docker system df`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// Image layers.
    pub images: i64,
    /// Containers' writable layers.
    pub containers: i64,
    /// Local volumes.
    pub volumes: i64,
    /// Build cache not shared with images.
    pub build_cache: i64,
}

impl Disk {
    /// The four together.
    pub fn used(&self) -> i64 {
        self.images.saturating_add(self.containers).saturating_add(self.volumes).saturating_add(self.build_cache)
    }
}

/// Reads `/info`, the events since `since`, then `/system/df`. The events come before the disk
/// figures: an answer cut at its cap leaves the connection unusable, and the activity matters
/// more (a busy engine must never look idle). Events beyond the cap mean a busy engine: activity
/// now.
async fn read_facts(sender: &mut Sender, since: i64) -> Result<Facts, String> {
    let until = jiff::Timestamp::now().as_second().max(since);
    let (containers_running, containers, images) = counts(&get(sender, "/info", MAX_INFO, STEP_TIMEOUT).await?)?;
    let events = format!("/events?since={since}&until={until}");
    let (last_activity, usable) = match get(sender, &events, MAX_EVENTS, STEP_TIMEOUT).await {
        Ok(body) => (last_activity(&body, since, until), true),
        Err(e) if e.contains("length limit exceeded") => (Some(until), false),
        Err(e) => return Err(e),
    };
    let disk = if usable {
        get(sender, "/system/df", MAX_DF, DF_TIMEOUT).await.and_then(|body| disk_of(&body))
    } else {
        Err(format!("not read this time: the events since the last read were more than {MAX_EVENTS} bytes"))
    };
    Ok(Facts { containers_running, containers, images, disk, last_activity, until })
}

/// Containers running, containers and images from an `/info` answer (negative counts read as 0).
pub fn counts(body: &str) -> Result<(i64, i64, i64), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Info {
        containers: i64,
        containers_running: i64,
        images: i64,
    }
    let i: Info = json("/info", body)?;
    Ok((i.containers_running.max(0), i.containers.max(i.containers_running).max(0), i.images.max(0)))
}

/// The bytes in a `/system/df` answer, summed as `docker system df` sums them: image layers once
/// (`LayersSize`), each container's writable layer, each volume whose size dockerd knows, and the
/// build cache records not shared with images. Negative or missing sizes count as 0.
pub fn disk_of(body: &str) -> Result<Disk, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Df {
        layers_size: Option<i64>,
        #[serde(default)]
        containers: Option<Vec<Container>>,
        #[serde(default)]
        volumes: Option<Vec<Volume>>,
        #[serde(default)]
        build_cache: Option<Vec<Build>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Container {
        size_rw: Option<i64>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Volume {
        usage_data: Option<Usage>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Usage {
        size: i64,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Build {
        size: Option<i64>,
        #[serde(default)]
        shared: bool,
    }
    fn sum(sizes: impl Iterator<Item = Option<i64>>) -> i64 {
        sizes.flatten().filter(|s| *s > 0).fold(0i64, i64::saturating_add)
    }
    let df: Df = json("/system/df", body)?;
    let images = df.layers_size.ok_or("/system/df has no LayersSize")?.max(0);
    Ok(Disk {
        images,
        containers: sum(df.containers.unwrap_or_default().into_iter().map(|c| c.size_rw)),
        volumes: sum(df.volumes.unwrap_or_default().into_iter().map(|v| v.usage_data.map(|u| u.size))),
        build_cache: sum(df.build_cache.unwrap_or_default().into_iter().filter(|b| !b.shared).map(|b| b.size)),
    })
}

/// The event kinds that count as activity: what a person or a job does with an engine.
const ACTIVE_TYPES: [&str; 5] = ["container", "image", "builder", "volume", "network"];

/// The newest activity in an `/events` answer (one JSON object per line), within `since..=until`
/// (an event claiming another time is taken at the nearest end of the window: an engine's clock
/// or its events are trusted for nothing). Lines that are not events are skipped.
pub fn last_activity(body: &str, since: i64, until: i64) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(rename = "Type")]
        type_: Option<String>,
        time: Option<i64>,
    }
    body.lines()
        .filter_map(|line| serde_json::from_str::<Event>(line).ok())
        .filter(|e| e.type_.as_deref().is_some_and(|t| ACTIVE_TYPES.contains(&t)))
        .map(|e| e.time.unwrap_or(until).clamp(since, until))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_version_strings_are_taken() {
        assert_eq!(version_of(r#"{"Version":"28.5.2","ApiVersion":"1.51"}"#), Ok("28.5.2".into()));
        assert_eq!(version_of(r#"{"Version":"29.0.0-rc.1+dirty"}"#), Ok("29.0.0-rc.1+dirty".into()));
        for bad in [
            format!(r#"{{"Version":"{}"}}"#, "9".repeat(65)),
            r#"{"Version":"1.0\n<script>"}"#.to_string(),
            r#"{"Version":""}"#.to_string(),
            r#"{"Version":"1 2"}"#.to_string(),
            r#"{"Version":28}"#.to_string(),
            r#"{}"#.to_string(),
            "not json".to_string(),
        ] {
            assert!(version_of(&bad).is_err(), "{bad}");
        }
    }

    /// A hostile engine on loopback: serves a valid certificate, then answers `reply` (or nothing)
    /// on every request. Returns its port, the CA and the client certificate.
    async fn hostile(reply: Option<&'static [u8]>, endless: bool) -> (u16, String, Pem) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (listener, acceptor, ca, client) = engine_listener().await;
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = [0u8; 4096];
                    while tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let Some(reply) = reply else { continue };
                        if tls.write_all(reply).await.is_err() {
                            return;
                        }
                        // An endless body: the same chunk forever.
                        while endless && tls.write_all(&[b'A'; 4096]).await.is_ok() {}
                    }
                });
            }
        });
        (port, ca, client)
    }

    /// A TLS listener on loopback with a certificate for `web.team-a.svc`: the listener, its
    /// acceptor, the CA (PEM) and a client certificate of that CA.
    async fn engine_listener() -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor, String, Pem) {
        let now = tls::now();
        let ca = tls::new_ca("test-ca", now).expect("ca");
        let server = tls::issue_server(&ca, "engine", &["web.team-a.svc".into()], 2, now).expect("server");
        let client = tls::issue_client(&ca, "tenant", 2, now).expect("client");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(&ca.cert, &server).expect("cfg")));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        (listener, acceptor, ca.cert, client)
    }

    async fn check(port: u16, ca: &str, client: &Pem) -> Result<String, String> {
        // The route dials port 2376; tests dial the hostile engine's port through the same code path.
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let config = tls::client_config(ca, client).expect("config");
        let name = ServerName::try_from("web.team-a.svc".to_string()).expect("name");
        let talked = tokio::time::timeout(CHECK_TIMEOUT, talk(tcp, config, name)).await;
        talked.unwrap_or(Err("overall timeout".into())).map(|(version, _)| version)
    }

    /// A scripted engine for garbage collection: its disk is build cache, images (some used by
    /// containers) and a writable layer; it answers the calls a run makes and records them.
    #[derive(Default)]
    struct Scripted {
        build_cache: i64,
        writable: i64,
        /// (id, size, dangling, used by a container, last tagged)
        images: Vec<(String, i64, bool, bool, &'static str)>,
        calls: Vec<String>,
    }

    impl Scripted {
        fn answer(&mut self, method: &str, path: &str) -> (u16, String) {
            self.calls.push(format!("{method} {}", path.split('?').next().unwrap_or(path)));
            let images = |s: &Self| s.images.iter().map(|i| i.1).sum::<i64>();
            match (method, path.split('?').next().unwrap_or(path)) {
                ("GET", "/system/df") => (
                    200,
                    serde_json::json!({"LayersSize": images(self),
                    "Containers": [{"SizeRw": self.writable}], "BuildCache": [{"Size": self.build_cache}]})
                    .to_string(),
                ),
                ("POST", "/build/prune") => {
                    let keep: i64 = path.split("keep-storage=").nth(1).and_then(|k| k.parse().ok()).unwrap_or(0);
                    self.build_cache = self.build_cache.min(keep);
                    (200, "{}".into())
                }
                ("POST", "/images/prune") => {
                    self.images.retain(|i| !i.2);
                    (200, "{}".into())
                }
                ("GET", "/containers/json") => (
                    200,
                    serde_json::json!(
                        self.images
                            .iter()
                            .filter(|i| i.3)
                            .map(|i| serde_json::json!({"ImageID": i.0}))
                            .collect::<Vec<_>>()
                    )
                    .to_string(),
                ),
                ("GET", "/images/json") => (
                    200,
                    serde_json::json!(
                        self.images
                            .iter()
                            .map(|i| serde_json::json!({"Id": i.0, "Created": 1, "Size": i.1, "SharedSize": 0}))
                            .collect::<Vec<_>>()
                    )
                    .to_string(),
                ),
                ("GET", p) if p.ends_with("/json") => {
                    let tagged = self.images.iter().find(|i| p.contains(&i.0)).map_or("", |i| i.4);
                    (200, serde_json::json!({"Metadata": {"LastTagTime": tagged}}).to_string())
                }
                ("DELETE", p) => match self.images.iter().position(|i| p.ends_with(&i.0)) {
                    Some(n) if self.images[n].3 => (409, r#"{"message":"image is being used"}"#.into()),
                    Some(n) => {
                        self.images.remove(n);
                        (200, "[]".into())
                    }
                    None => (404, "{}".into()),
                },
                ("POST", "/containers/prune") | ("POST", "/volumes/prune") => (200, "{}".into()),
                _ => (404, "{}".into()),
            }
        }
    }

    /// Serves `engine` over TLS on loopback; returns a session to it.
    async fn scripted(engine: Arc<std::sync::Mutex<Scripted>>) -> Session {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (listener, acceptor, ca, client) = engine_listener().await;
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let tls = acceptor.accept(tcp).await.expect("tls");
            let mut lines = tokio::io::BufReader::new(tls);
            loop {
                let mut request = String::new();
                if lines.read_line(&mut request).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut header = String::new();
                while lines.read_line(&mut header).await.unwrap_or(0) > 2 {
                    header.clear();
                }
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (code, body) = engine.lock().expect("engine").answer(method, path);
                let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if lines.get_mut().write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let config = tls::client_config(&ca, &client).expect("config");
        let name = ServerName::try_from("web.team-a.svc".to_string()).expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("tls");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("http");
        Session { sender, driver: tokio::spawn(conn) }
    }

    const MIB: i64 = 1 << 20;
    const GIB: i64 = 1 << 30;

    fn id(n: u8) -> String {
        format!("sha256:{}", format!("{n:x}").repeat(64).chars().take(64).collect::<String>())
    }

    #[tokio::test]
    async fn garbage_collection_prunes_in_order_and_stops_below_the_low_mark() {
        let policy = DiskGc::default();
        // 1000 MiB volume, marks 85% / 70%: 900 MiB used, down to 700.
        let engine = Arc::new(std::sync::Mutex::new(Scripted {
            build_cache: 50 * MIB,
            writable: 100 * MIB,
            images: vec![
                (id(1), 100 * MIB, true, false, ""),                      // dangling
                (id(2), 300 * MIB, false, true, "2026-01-01T00:00:00Z"),  // used by a container
                (id(3), 150 * MIB, false, false, "2026-03-01T00:00:00Z"), // unused, newer
                (id(4), 200 * MIB, false, false, "2026-02-01T00:00:00Z"), // unused, longest unused
            ],
            calls: vec![],
        }));
        let mut session = scripted(engine.clone()).await;
        let disk = disk_of(&engine.lock().expect("e").answer("GET", "/system/df").1).expect("df");
        assert_eq!(disk.used(), 900 * MIB);
        engine.lock().expect("e").calls.clear();
        let run = collect_garbage(&mut session.sender, &policy, disk, 700 * MIB).await;
        assert_eq!(run.error, None);
        assert_eq!(run.before, 900 * MIB);
        assert_eq!(run.after.used(), 550 * MIB, "stopped after the step that got below 700 MiB");
        assert_eq!(
            run.steps,
            [(gc::BUILD_CACHE, 50 * MIB), (gc::DANGLING_IMAGES, 100 * MIB), (gc::UNUSED_IMAGES, 200 * MIB)]
        );
        assert_eq!(run.images_removed, 1);
        let e = engine.lock().expect("e");
        let ids: Vec<&str> = e.images.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(ids, [id(2), id(3)], "the used image stays; of the unused, the longest unused went first");
        let calls: Vec<&str> = e.calls.iter().map(String::as_str).collect();
        let delete = format!("DELETE /images/{}", id(4));
        assert_eq!(calls.first(), Some(&"POST /build/prune"));
        assert!(calls.contains(&delete.as_str()), "{calls:?}");
        assert!(!calls.iter().any(|c| c.contains("/containers/prune") || c.contains("/volumes/prune")), "{calls:?}");
        assert!(
            !calls.iter().any(|c| c.starts_with("DELETE") && c.contains(&id(2))),
            "never an image in use: {calls:?}"
        );
    }

    #[tokio::test]
    async fn garbage_collection_that_cannot_get_below_tries_every_step_but_volumes() {
        let policy = DiskGc::default();
        let engine = Arc::new(std::sync::Mutex::new(Scripted {
            writable: 800 * MIB,
            images: vec![(id(2), 100 * MIB, false, true, "")],
            ..Scripted::default()
        }));
        let mut session = scripted(engine.clone()).await;
        let disk = disk_of(&engine.lock().expect("e").answer("GET", "/system/df").1).expect("df");
        engine.lock().expect("e").calls.clear();
        let run = collect_garbage(&mut session.sender, &policy, disk, 700 * MIB).await;
        assert_eq!(run.freed(), 0);
        let names: Vec<&str> = run.steps.iter().map(|s| s.0).collect();
        assert_eq!(names, [gc::BUILD_CACHE, gc::DANGLING_IMAGES, gc::UNUSED_IMAGES, gc::STOPPED_CONTAINERS]);
        assert!(
            !engine.lock().expect("e").calls.iter().any(|c| c.contains("/volumes/prune")),
            "volumes are tenants' data"
        );
        assert_eq!(engine.lock().expect("e").images.len(), 1);
    }

    #[tokio::test]
    async fn no_image_is_removed_past_the_deadline() {
        let engine = Arc::new(std::sync::Mutex::new(Scripted {
            images: vec![(id(3), 150 * MIB, false, false, ""), (id(4), 200 * MIB, false, false, "")],
            ..Scripted::default()
        }));
        let mut session = scripted(engine.clone()).await;
        let mut removed = 0;
        let past = tokio::time::Instant::now();
        remove_unused_images(&mut session.sender, GIB, &mut removed, past).await.expect("ran");
        assert_eq!(removed, 0);
        let e = engine.lock().expect("e");
        assert_eq!(e.images.len(), 2);
        assert!(
            !e.calls.iter().any(|c| c.starts_with("DELETE") || c.ends_with("/json") && c.contains("sha256")),
            "{:?}",
            e.calls
        );
    }

    #[test]
    fn min_age_reads_the_schemas_units() {
        assert_eq!([min_age_secs("90s"), min_age_secs("30m"), min_age_secs("24h")], [90, 1800, 86_400]);
        assert_eq!(min_age_secs("soon"), 3600);
    }

    #[test]
    fn only_image_ids_go_into_request_paths() {
        assert!(is_image_id(&id(10)));
        for bad in ["sha256:../../containers/x", "busybox", &format!("sha256:{}", "g".repeat(64)), "sha256:abc"] {
            assert!(!is_image_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_cap() {
        let head: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n";
        let (port, ca, client) = hostile(Some(head), true).await;
        let started = std::time::Instant::now();
        let err = check(port, &ca, &client).await.expect_err("refused");
        assert!(err.contains("length limit exceeded") && err.contains("at most 16384 bytes"), "{err}");
        assert!(started.elapsed() < CHECK_TIMEOUT, "cut at the cap, not by the timeout");
    }

    #[tokio::test]
    async fn a_silent_engine_times_out_per_step() {
        let (port, ca, client) = hostile(None, false).await;
        let err = check(port, &ca, &client).await.expect_err("silent");
        assert_eq!(err, "GET /_ping took longer than 3s");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_a_version_is_not_taken() {
        let (port, ca, client) = hostile(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"), false).await;
        // /_ping says OK and so does /version: "OK" is not JSON.
        let err = check(port, &ca, &client).await.expect_err("not a version");
        assert!(err.starts_with("/version is not JSON"), "{err}");
    }

    #[test]
    fn counts_come_from_info_and_are_never_negative() {
        let info =
            r#"{"ID":"x","Containers":5,"ContainersRunning":2,"ContainersPaused":0,"Images":7,"Driver":"overlay2"}"#;
        assert_eq!(counts(info), Ok((2, 5, 7)));
        assert_eq!(counts(r#"{"Containers":-1,"ContainersRunning":-3,"Images":-2}"#), Ok((0, 0, 0)));
        // more running than there are: the total is at least the running
        assert_eq!(counts(r#"{"Containers":1,"ContainersRunning":4,"Images":0}"#), Ok((4, 4, 0)));
        assert!(counts(r#"{"Containers":"many"}"#).is_err());
        assert!(counts("<html>").is_err());
    }

    #[test]
    fn disk_is_summed_as_docker_system_df_sums_it() {
        // Shaped as dockerd 26 answers: layers counted once, each container's writable layer, volumes
        // with a known size (-1: not computed), build cache records not shared with images.
        let df = r#"{
            "LayersSize": 1000,
            "Images": [{"Id": "sha256:a", "Size": 800, "SharedSize": 300, "Containers": 1}],
            "Containers": [{"Id": "c1", "SizeRw": 10}, {"Id": "c2", "SizeRw": 0}, {"Id": "c3"}],
            "Volumes": [{"Name": "v1", "UsageData": {"Size": 100, "RefCount": 1}},
                        {"Name": "v2", "UsageData": {"Size": -1, "RefCount": -1}}, {"Name": "v3"}],
            "BuildCache": [{"ID": "b1", "Size": 50, "Shared": false}, {"ID": "b2", "Size": 70, "Shared": true},
                           {"ID": "b3", "Size": 5}]
        }"#;
        let d = disk_of(df).expect("df");
        assert_eq!(d, Disk { images: 1000, containers: 10, volumes: 100, build_cache: 55 });
        assert_eq!(d.used(), 1165);
        // An engine with nothing in it answers nulls.
        let empty = r#"{"LayersSize":0,"Images":[],"Containers":[],"Volumes":[],"BuildCache":null}"#;
        assert_eq!(disk_of(empty).expect("empty").used(), 0);
        // Hostile figures: negatives count as 0, sums saturate instead of overflowing.
        let big = i64::MAX;
        let hostile = format!(r#"{{"LayersSize":-5,"Containers":[{{"SizeRw":{big}}},{{"SizeRw":{big}}}]}}"#);
        let d = disk_of(&hostile).expect("hostile");
        assert_eq!((d.images, d.containers, d.used()), (0, i64::MAX, i64::MAX));
        assert!(disk_of(r#"{"Images":[]}"#).is_err(), "no LayersSize: not a df answer");
    }

    #[test]
    fn activity_is_the_newest_event_a_person_or_job_caused_within_the_window() {
        let events = [
            r#"{"Type":"container","Action":"start","Actor":{"ID":"c1"},"time":1000,"timeNano":1000000000000}"#,
            r#"{"Type":"image","Action":"pull","time":1010}"#,
            r#"{"Type":"daemon","Action":"reload","time":1050}"#,
            "not json",
            r#"{"Type":"network","Action":"connect","time":1020}"#,
        ]
        .join("\n");
        assert_eq!(last_activity(&events, 900, 1100), Some(1020), "daemon events are not activity");
        assert_eq!(last_activity(r#"{"Type":"daemon","time":1000}"#, 900, 1100), None);
        assert_eq!(last_activity("", 900, 1100), None);
        // An engine claiming a time in the future (or the past) is taken at the window's end.
        assert_eq!(last_activity(r#"{"Type":"container","time":99999999999}"#, 900, 1100), Some(1100));
        assert_eq!(last_activity(r#"{"Type":"volume","time":-5}"#, 900, 1100), Some(900));
        assert_eq!(last_activity(r#"{"Type":"builder"}"#, 900, 1100), Some(1100));
    }

    #[test]
    fn engine_text_is_quoted_without_control_characters() {
        assert_eq!(printable("OK\u{1b}[31m\r\nrest", 5), "OK[31");
    }
}
