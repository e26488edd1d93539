//! The checked-in CRDs and API reference must be exactly what the code generates. Regenerate with
//! `make generate` (`cargo run -- crd`, `cargo run -- crd class`, `cargo run -- crd pool`, `cargo run -- docs`).

/// Asserts that `crds/FILE` is `generated` (or writes it with UPDATE_CRDS set).
fn matches_checked_in(file: &str, generated: &str) {
    let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(&path, generated).expect("write crd");
    }
    let checked_in = std::fs::read_to_string(&path).expect("crds/ holds the CRD");
    assert!(
        checked_in == generated,
        "crds/{file} is out of date with src/crd: run `make generate` and commit the result"
    );
}

#[test]
fn checked_in_crd_matches_the_code() {
    matches_checked_in("dockersandboxes.dockersandbox.dev.yaml", &dockersandbox_operator::crd_yaml());
}

#[test]
fn checked_in_class_crd_matches_the_code() {
    matches_checked_in("dockersandboxclasses.dockersandbox.dev.yaml", &dockersandbox_operator::class_crd_yaml());
}

#[test]
fn checked_in_pool_crd_matches_the_code() {
    matches_checked_in("dockersandboxpools.dockersandbox.dev.yaml", &dockersandbox_operator::pool_crd_yaml());
}

#[test]
fn chart_crd_is_the_same_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let crd = std::fs::read_to_string(format!("{root}/crds/dockersandboxes.dockersandbox.dev.yaml")).expect("crd");
    let chart = format!("{root}/charts/dockersandbox-operator/files/crd.yaml");
    if let Ok(copy) = std::fs::read_to_string(&chart) {
        assert!(copy == crd, "{chart} differs from crds/: run `make generate`");
    } else {
        panic!("{chart} is missing: run `make generate`");
    }
}

#[test]
fn api_reference_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
    let generated = dockersandbox_operator::docs::api_reference();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(path, &generated).expect("write docs");
    }
    let checked_in = std::fs::read_to_string(path).expect("docs/api.md exists");
    assert!(
        checked_in == generated,
        "docs/api.md is out of date with src/crd: run `make generate` and commit the result"
    );
}
