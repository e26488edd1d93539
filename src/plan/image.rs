//! Pure: image references, read as the container runtime reads them (registry, repository, tag,
//! digest), and a class's allow-list patterns matched part by part. A `*` matches a run of characters
//! inside one part and never crosses a `/`, `:` or `@` that the pattern does not cross itself, so
//! `docker:*-dind` (Docker Hub's `library/docker`, tags ending `-dind`) never admits
//! `docker:5000/evil-dind` (registry `docker:5000`, repository `evil-dind`).

/// An image reference in its parts, with Docker Hub's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with its port if any (`docker.io`, `registry.corp:5000`).
    pub registry: String,
    /// Repository path in the registry (`library/docker`, `team/dind`).
    pub repository: String,
    /// Tag, if the reference names one.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if the reference names one.
    pub digest: Option<String>,
}

const MAX_REFERENCE: usize = 512;
const DEFAULT_REGISTRY: &str = "docker.io";

/// Reads `s` as an image reference; `wildcards` lets `*` stand in any part (for class patterns).
/// `None` when it is not a reference a runtime would pull.
pub fn parse(s: &str, wildcards: bool) -> Option<Reference> {
    if s.is_empty() || s.len() > MAX_REFERENCE || !s.is_ascii() {
        return None;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    let registry = if components.len() > 1 && (first.contains(['.', ':']) || first == "localhost") {
        components.remove(0);
        if first == "index.docker.io" { DEFAULT_REGISTRY } else { first }
    } else {
        DEFAULT_REGISTRY
    };
    if registry == DEFAULT_REGISTRY && components.len() == 1 {
        components.insert(0, "library");
    }
    let ok = host(registry, wildcards)
        && components.iter().all(|c| path_component(c, wildcards))
        && tag.is_none_or(|t| is_tag(t, wildcards))
        && digest.is_none_or(|d| is_digest(d, wildcards));
    ok.then(|| Reference {
        registry: registry.to_string(),
        repository: components.join("/"),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// Whether `image` is allowed by `pattern`: every part matches, each on its own. A pattern that
/// names neither tag nor digest names repositories (any tag or digest of them); one that names a tag
/// or a digest admits only images with a matching one. `*` alone admits every image.
pub fn matches(pattern: &str, image: &str) -> bool {
    let Some(i) = parse(image, false) else { return false };
    if pattern == "*" {
        return true;
    }
    let Some(p) = parse(pattern, true) else { return false };
    let any_version = p.tag.is_none() && p.digest.is_none();
    part(&p.registry, &i.registry)
        && part(&p.repository, &i.repository)
        && (any_version
            || (opt_part(p.tag.as_deref(), i.tag.as_deref()) && opt_part(p.digest.as_deref(), i.digest.as_deref())))
}

fn opt_part(pattern: Option<&str>, s: Option<&str>) -> bool {
    match (pattern, s) {
        (None, None) => true,
        (Some(p), Some(s)) => part(p, s),
        _ => false,
    }
}

/// One part: split at `/` and `:` on both sides; the same separators in the same places, and each
/// segment matched with `*` as any run of characters.
fn part(pattern: &str, s: &str) -> bool {
    let seps = |x: &str| x.bytes().filter(|b| matches!(b, b'/' | b':')).collect::<Vec<_>>();
    let split = |x: &str| x.split(['/', ':']).map(str::to_string).collect::<Vec<_>>();
    seps(pattern) == seps(s) && split(pattern).iter().zip(split(s)).all(|(p, s)| glob(p, &s))
}

/// Whether `s` matches `pattern`, where `*` matches any run of characters (including none).
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

fn chars_ok(s: &str, wildcards: bool, extra: &[u8]) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b) || (wildcards && b == b'*'))
}

fn host(h: &str, wildcards: bool) -> bool {
    let (name, port) = h.split_once(':').unwrap_or((h, ""));
    chars_ok(name, wildcards, b".-")
        && (h == name || (chars_ok(port, wildcards, b"") && port.bytes().all(|b| b.is_ascii_digit() || b == b'*')))
}

fn path_component(c: &str, wildcards: bool) -> bool {
    chars_ok(c, wildcards, b"._-") && !c.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_tag(t: &str, wildcards: bool) -> bool {
    t.len() <= 128 && chars_ok(t, wildcards, b"._-") && !t.starts_with(['.', '-'])
}

fn is_digest(d: &str, wildcards: bool) -> bool {
    d.split_once(':').is_some_and(|(algo, hex)| chars_ok(algo, wildcards, b"+._-") && chars_ok(hex, wildcards, b""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_in_their_parts() {
        let r = parse("docker:28.5.2-dind", false).expect("ok");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("docker.io", "library/docker"));
        assert_eq!(r.tag.as_deref(), Some("28.5.2-dind"));
        let r = parse("docker:5000/evil-dind", false).expect("ok");
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag), ("docker:5000", "evil-dind", None));
        let r = parse("registry.corp:5000/team/dind:1@sha256:abc", false).expect("ok");
        assert_eq!(r.registry, "registry.corp:5000");
        assert_eq!(r.repository, "team/dind");
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (Some("1"), Some("sha256:abc")));
        assert_eq!(parse("localhost/dind", false).expect("ok").registry, "localhost");
        assert_eq!(parse("index.docker.io/library/docker:1", false), parse("docker:1", false));
        for bad in ["", "Docker:1", "a b", "docker:", "docker:-x", "@sha256:x", "x@y", "/x", "x//y", "dind:*"] {
            assert_eq!(parse(bad, false), None, "{bad:?}");
        }
    }

    #[test]
    fn a_star_stays_inside_its_part() {
        for (p, s) in [
            ("docker:*-dind", "docker:28.5.2-dind"),
            ("docker:*-dind", "docker.io/library/docker:27-dind"),
            ("registry.corp/dind@sha256:*", "registry.corp/dind@sha256:abc"),
            ("registry.corp/*:*", "registry.corp/dind:1"),
            ("*.corp/dind:1", "registry.corp/dind:1"),
            ("exact:1", "exact:1"),
            ("localhost/dockersandbox/*", "localhost/dockersandbox/dind:28"),
            ("registry.corp/dind", "registry.corp/dind@sha256:abc"),
            ("*", "anything.example:5000/a/b:c"),
        ] {
            assert!(matches(p, s), "{p} ~ {s}");
        }
        for (p, s) in [
            ("docker:*-dind", "docker:5000/evil-dind"),
            ("docker:*-dind", "docker:28.5.2-dind-rootless"),
            ("docker:*-dind", "evil/docker:1-dind"),
            ("docker:*-dind", "docker:1-dind@sha256:abc"),
            ("registry.corp/*:*", "registry.corp/team/evil:1"),
            ("registry.corp/*:*", "registry.corp:5000/dind:1"),
            ("*.corp/dind:1", "evil.com/x.corp/dind:1"),
            ("*.corp/dind:1", "registry.corp:80/dind:1"),
            ("registry.corp/dind@sha256:*", "registry.corp/dind:1"),
            ("exact:1", "exact:12"),
            ("localhost/dockersandbox/*", "localhost/dockersandbox/a/b:1"),
            ("localhost/dockersandbox/*", "localhost:5000/dockersandbox/dind:1"),
            ("*", "Not A Reference"),
        ] {
            assert!(!matches(p, s), "{p} !~ {s}");
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(glob("*", ""));
        assert!(!glob("a*b*c", "acb"));
        assert!(!glob("ab*ba", "aba"));
    }
}
