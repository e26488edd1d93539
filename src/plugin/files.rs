//! What `kubectl dsb` writes on the user's machine: the certificate bundle (the layout
//! DOCKER_CERT_PATH expects) and a docker context in the docker CLI's own store, laid out exactly
//! as `docker context create` lays it out (`contexts/meta/<sha256 of name>/meta.json` and
//! `contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{Error, Result, io};
use crate::resources::secret::{CA_CERT, CERT, KEY, text};

/// The client certificate of a sandbox, as PEM text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certs {
    /// The sandbox CA (verifies the engine).
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Certs {
    /// The certificates in the client Secret `namespace/name`.
    pub fn from_secret(secret: &Secret, namespace: &str, name: &str) -> Result<Self> {
        let get = |key: &'static str| {
            text(secret, key).filter(|v| !v.is_empty()).ok_or_else(|| Error::SecretIncomplete {
                namespace: namespace.to_string(),
                name: name.to_string(),
                key,
            })
        };
        Ok(Self { ca: get(CA_CERT)?, cert: get(CERT)?, key: get(KEY)? })
    }

    /// (file name, content, mode) of each file of the bundle.
    fn files(&self) -> [(&'static str, &str, u32); 3] {
        [(CA_CERT, &self.ca, 0o644), (CERT, &self.cert, 0o644), (KEY, &self.key, 0o600)]
    }
}

/// The docker CLI's configuration directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    home.map(|h| PathBuf::from(h).join(".docker")).ok_or_else(|| {
        Error::Other("neither DOCKER_CONFIG nor HOME is set: cannot find the docker configuration".into())
    })
}

/// Where `connect` and `env` keep a sandbox's certificates, pid file and tunnel log.
pub fn cert_dir(docker_config: &Path, namespace: &str, name: &str) -> PathBuf {
    docker_config.join("dsb").join(namespace).join(name)
}

/// The docker context of a sandbox: `dsb-NAMESPACE.NAME`. Neither a namespace nor a sandbox name
/// can hold a `.`, so no two sandboxes share a context (`dsb-a-b-c` was both `a-b/c` and `a/b-c`).
pub fn context_name(namespace: &str, name: &str) -> String {
    format!("dsb-{namespace}.{name}")
}

/// Creates `dir` and every missing parent with mode 0700: the certificates and keys below are the
/// tenant's credentials.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("cannot create", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("cannot chmod", dir))?;
    }
    Ok(())
}

/// Writes `content` to `path` with `mode`, through a temporary file and a rename, so a docker
/// client reading the file never sees half of it.
fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    // unique per process: `env` and `connect` may write the same directory at once
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io("cannot write", &tmp))?;
    f.write_all(content).map_err(io("cannot write", &tmp))?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io("cannot chmod", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("cannot write", path))
}

/// Writes ca.pem, cert.pem (0644) and key.pem (0600) into `dir` (created 0700 when missing).
pub fn write_bundle(dir: &Path, certs: &Certs) -> Result<()> {
    private_dir(dir)?;
    for (file, content, mode) in certs.files() {
        write_file(&dir.join(file), content.as_bytes(), mode)?;
    }
    Ok(())
}

/// `meta.json` of a docker context (the fields `docker context create` writes).
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    name: String,
    metadata: MetaMetadata,
    endpoints: Endpoints,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
struct MetaMetadata {
    #[serde(default)]
    description: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Endpoints {
    docker: DockerEndpoint,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct DockerEndpoint {
    host: String,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// The directory id the docker CLI gives a context: the hex SHA-256 of its name.
fn context_id(name: &str) -> String {
    Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn meta_path(docker_config: &Path, context: &str) -> PathBuf {
    docker_config.join("contexts").join("meta").join(context_id(context)).join("meta.json")
}

/// Creates or replaces the docker context `context` pointing at `host` (`tcp://ADDR:PORT`) with the
/// sandbox's certificates and TLS verification on.
pub fn write_context(docker_config: &Path, context: &str, host: &str, description: &str, certs: &Certs) -> Result<()> {
    let id = context_id(context);
    let tls = docker_config.join("contexts").join("tls").join(&id).join("docker");
    for dir in [docker_config, &docker_config.join("contexts"), &tls] {
        private_dir(dir)?;
    }
    for (file, content, _) in certs.files() {
        write_file(&tls.join(file), content.as_bytes(), 0o600)?;
    }
    let meta = Meta {
        name: context.to_string(),
        metadata: MetaMetadata { description: description.to_string() },
        endpoints: Endpoints { docker: DockerEndpoint { host: host.to_string(), skip_tls_verify: false } },
    };
    let path = meta_path(docker_config, context);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    }
    let json = serde_json::to_vec(&meta).map_err(|e| Error::Other(format!("cannot encode the docker context: {e}")))?;
    write_file(&path, &json, 0o644)
}

/// The docker host of context `context`, when it exists.
pub fn context_host(docker_config: &Path, context: &str) -> Option<String> {
    let meta: Meta = serde_json::from_slice(&fs::read(meta_path(docker_config, context)).ok()?).ok()?;
    (meta.name == context).then_some(meta.endpoints.docker.host)
}

/// The port of a `tcp://127.0.0.1:PORT` host (any loopback address), when it is one.
pub fn loopback_port(host: &str) -> Option<u16> {
    let addr: std::net::SocketAddr = host.strip_prefix("tcp://")?.parse().ok()?;
    addr.ip().is_loopback().then_some(addr.port())
}

/// `tcp://HOST:PORT`, with IPv6 addresses in brackets.
pub fn tcp_host(addr: std::net::SocketAddr) -> String {
    format!("tcp://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn certs() -> Certs {
        Certs { ca: "CA".into(), cert: "CERT".into(), key: "KEY".into() }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dsb-plugin-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn bundle_has_the_docker_cert_path_layout_and_a_private_key() {
        let dir = tempdir("bundle").join("a/b");
        write_bundle(&dir, &certs()).expect("writes");
        assert_eq!(fs::read_to_string(dir.join("ca.pem")).expect("ca"), "CA");
        assert_eq!(fs::read_to_string(dir.join("cert.pem")).expect("cert"), "CERT");
        assert_eq!(fs::read_to_string(dir.join("key.pem")).expect("key"), "KEY");
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // written again (renewed certificates): replaced, still private, no temporary files left
        write_bundle(&dir, &Certs { key: "KEY2".into(), ..certs() }).expect("rewrites");
        assert_eq!(fs::read_to_string(dir.join("key.pem")).expect("key"), "KEY2");
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        let names: Vec<_> = fs::read_dir(&dir).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let _ = fs::remove_dir_all(tempdir("bundle"));
    }

    #[test]
    fn certs_come_from_the_client_secret_and_a_missing_key_is_named() {
        use k8s_openapi::ByteString;
        let data = |keys: &[&str]| -> BTreeMap<String, ByteString> {
            keys.iter().map(|k| (k.to_string(), ByteString(k.to_uppercase().into_bytes()))).collect()
        };
        let full = Secret { data: Some(data(&["ca.pem", "cert.pem", "key.pem"])), ..Secret::default() };
        let c = Certs::from_secret(&full, "ns", "web-client").expect("complete");
        assert_eq!(c, Certs { ca: "CA.PEM".into(), cert: "CERT.PEM".into(), key: "KEY.PEM".into() });
        let partial = Secret { data: Some(data(&["ca.pem", "cert.pem"])), ..Secret::default() };
        let e = Certs::from_secret(&partial, "ns", "web-client").expect_err("incomplete");
        assert!(e.to_string().contains("ns/web-client has no key.pem"), "{e}");
    }

    #[test]
    fn context_is_written_where_the_docker_cli_looks() {
        let cfg = tempdir("context");
        let name = context_name("team-a", "web");
        assert_eq!(name, "dsb-team-a.web");
        assert_ne!(context_name("a-b", "c"), context_name("a", "b-c"), "no two sandboxes share a context");
        write_context(&cfg, &name, "tcp://127.0.0.1:12376", "DockerSandbox team-a/web", &certs()).expect("writes");
        // the directory `docker context create dsb-a-b` made (docker 28.2.2)
        assert_eq!(context_id("dsb-a-b"), "6562089c1258acee2c16e2e53191b5b7459a81440bac0dbc9debdd10e2315c1f");
        let meta =
            fs::read_to_string(cfg.join("contexts/meta").join(context_id(&name)).join("meta.json")).expect("meta");
        let v: serde_json::Value = serde_json::from_str(&meta).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"Name": "dsb-team-a.web", "Metadata": {"Description": "DockerSandbox team-a/web"},
                "Endpoints": {"docker": {"Host": "tcp://127.0.0.1:12376", "SkipTLSVerify": false}}})
        );
        let tls = cfg.join("contexts/tls").join(context_id(&name)).join("docker");
        for (f, want) in [("ca.pem", "CA"), ("cert.pem", "CERT"), ("key.pem", "KEY")] {
            assert_eq!(fs::read_to_string(tls.join(f)).expect("tls file"), want);
            assert_eq!(mode(&tls.join(f)), 0o600, "{f}");
        }
        assert_eq!(context_host(&cfg, &name).as_deref(), Some("tcp://127.0.0.1:12376"));
        assert_eq!(context_host(&cfg, "dsb-other-one"), None);
        // updated in place (a new port)
        write_context(&cfg, &name, "tcp://127.0.0.1:4000", "d", &certs()).expect("rewrites");
        assert_eq!(context_host(&cfg, &name).as_deref(), Some("tcp://127.0.0.1:4000"));
        let _ = fs::remove_dir_all(&cfg);
    }

    #[test]
    fn loopback_ports_and_hosts() {
        assert_eq!(loopback_port("tcp://127.0.0.1:12376"), Some(12376));
        assert_eq!(loopback_port("tcp://[::1]:2000"), Some(2000));
        assert_eq!(loopback_port("tcp://10.96.0.12:2376"), None);
        assert_eq!(loopback_port("unix:///var/run/docker.sock"), None);
        assert_eq!(tcp_host("[fd00::1]:2376".parse().expect("addr")), "tcp://[fd00::1]:2376");
        assert_eq!(cert_dir(Path::new("/h/.docker"), "ns", "web"), PathBuf::from("/h/.docker/dsb/ns/web"));
    }
}
