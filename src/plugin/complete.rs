//! Completion of `kubectl dsb <TAB>` by kubectl itself (kubectl ≥ 1.26 runs `kubectl_complete-dsb
//! ARGS... PARTIAL` from PATH and reads Cobra's `__complete` format: one candidate per line, then
//! `:DIRECTIVE`). Link it once: `ln -s kubectl-dsb "$(dirname "$(command -v kubectl-dsb)")/kubectl_complete-dsb"`.
//! Subcommands, flags and shells come from the clap definition; sandbox and namespace names from
//! the cluster (nothing when it cannot be read).

use clap::CommandFactory;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

use super::cli::{Cli, Global};
use super::cluster::Cluster;
use crate::crd::DockerSandbox;

/// Cobra's directive: no file completion after these candidates.
const NO_FILE: u8 = 4;
/// Cobra's default directive: the shell may complete file names.
const FILES: u8 = 0;

/// What to offer for the word being typed.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    /// These words (already known).
    Words(Vec<String>),
    /// Sandbox names in this namespace (None: the kubeconfig's).
    Sandboxes(Option<String>),
    /// Namespace names.
    Namespaces,
    /// File names (the shell's own completion).
    Files,
}

/// Decides what to complete from the words before the one being typed (`last`).
pub fn want(args: &[String]) -> Want {
    let (before, last) = match args.split_last() {
        Some((last, before)) => (before, last.as_str()),
        None => (&[][..], ""),
    };
    let root = Cli::command();
    let flags_with_values = [
        "-n",
        "--namespace",
        "--context",
        "--kubeconfig",
        "-p",
        "--port",
        "--tunnel",
        "-o",
        "--format",
        "--tail",
        "--to",
    ];
    let mut sub: Option<&str> = None;
    let (mut positionals, mut namespace, mut i) = (0, None, 0);
    while i < before.len() {
        let w = before[i].as_str();
        if flags_with_values.contains(&w) {
            if matches!(w, "-n" | "--namespace") {
                namespace = before.get(i + 1).cloned();
            }
            i += 2;
            continue;
        }
        if let Some(ns) = w.strip_prefix("--namespace=") {
            namespace = Some(ns.to_string());
        } else if !w.starts_with('-') {
            if sub.is_none() { sub = Some(w) } else { positionals += 1 }
        }
        i += 1;
    }
    if matches!(before.last().map(String::as_str), Some("-n" | "--namespace")) {
        return Want::Namespaces;
    }
    let command = sub.and_then(|s| root.find_subcommand(s));
    if last.starts_with('-') {
        let own = command.map(|c| c.get_arguments().collect::<Vec<_>>()).unwrap_or_default();
        let args = own.into_iter().chain(root.get_arguments().filter(|a| a.is_global_set()));
        let longs = args.filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long().map(|l| format!("--{l}")));
        return Want::Words(longs.filter(|l| l.starts_with(last)).collect());
    }
    let words = |it: Vec<String>| Want::Words(it.into_iter().filter(|w| w.starts_with(last)).collect());
    match (command.map(|c| c.get_name()), positionals) {
        (None, _) => words(root.get_subcommands().map(|c| c.get_name().to_string()).filter(|n| n != "help").collect()),
        (Some("completion"), 0) => words(["bash", "zsh", "fish", "elvish", "powershell"].map(String::from).to_vec()),
        (Some("connect" | "disconnect" | "env" | "bundle" | "logs" | "df" | "prune" | "suspend" | "resume"), 0) => {
            Want::Sandboxes(namespace)
        }
        (Some("bundle"), 1) => Want::Files,
        _ => Want::Words(vec![]),
    }
}

/// Prints the completions for `args` (the words after `kubectl dsb`, the last being typed).
pub async fn run(args: Vec<String>) {
    let last = args.last().cloned().unwrap_or_default();
    let (candidates, directive) = match want(&args) {
        Want::Words(w) => (w, NO_FILE),
        Want::Files => (vec![], FILES),
        Want::Sandboxes(namespace) => (names(namespace, true).await, NO_FILE),
        Want::Namespaces => (names(None, false).await, NO_FILE),
    };
    for c in candidates.iter().filter(|c| c.starts_with(&last)) {
        println!("{c}");
    }
    println!(":{directive}");
}

/// Names of the sandboxes in `namespace` (else the kubeconfig's), or of the namespaces.
async fn names(namespace: Option<String>, sandboxes: bool) -> Vec<String> {
    let Ok(cluster) = Cluster::new(&Global { namespace, ..Global::default() }).await else { return vec![] };
    let lp = ListParams::default();
    let list = async {
        let metas = match sandboxes {
            true => {
                cluster.api::<DockerSandbox>().list_metadata(&lp).await?.items.into_iter().map(|m| m.metadata).collect()
            }
            false => Api::<Namespace>::all(cluster.client.clone())
                .list_metadata(&lp)
                .await?
                .items
                .into_iter()
                .map(|m| m.metadata)
                .collect::<Vec<_>>(),
        };
        Ok::<_, kube::Error>(metas.into_iter().filter_map(|m| m.name).collect::<Vec<_>>())
    };
    let list = tokio::time::timeout(std::time::Duration::from_secs(5), list).await;
    list.ok().and_then(Result::ok).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(args: &[&str]) -> Want {
        want(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn subcommands_first() {
        let Want::Words(all) = w(&[""]) else { panic!() };
        assert_eq!(
            all,
            ["connect", "disconnect", "env", "bundle", "ls", "logs", "df", "prune", "suspend", "resume", "completion"]
        );
        assert_eq!(w(&["resume", "--wait", ""]), Want::Sandboxes(None));
        assert_eq!(w(&["co"]), Want::Words(vec!["connect".into(), "completion".into()]));
        assert_eq!(w(&["-n", "team-a", "l"]), Want::Words(vec!["ls".into(), "logs".into()]));
        assert_eq!(w(&["prune", "--dry-run", ""]), Want::Sandboxes(None));
        assert_eq!(w(&["-n", "team-a", "df", ""]), Want::Sandboxes(Some("team-a".into())));
    }

    #[test]
    fn sandbox_names_in_the_namespace_given() {
        assert_eq!(w(&["connect", ""]), Want::Sandboxes(None));
        assert_eq!(w(&["connect", "-n", "team-a", "w"]), Want::Sandboxes(Some("team-a".into())));
        assert_eq!(w(&["-n", "b", "logs", ""]), Want::Sandboxes(Some("b".into())));
        assert_eq!(w(&["env", "--namespace=c", ""]), Want::Sandboxes(Some("c".into())));
        assert_eq!(w(&["connect", "web", ""]), Want::Words(vec![]));
        assert_eq!(w(&["bundle", "web", ""]), Want::Files);
    }

    #[test]
    fn flags_namespaces_and_shells() {
        assert_eq!(w(&["connect", "-n", ""]), Want::Namespaces);
        let Want::Words(flags) = w(&["connect", "web", "--t"]) else { panic!() };
        assert_eq!(flags, ["--tunnel"]);
        let Want::Words(flags) = w(&["connect", "--b"]) else { panic!() };
        assert_eq!(flags, ["--background"], "the hidden --background-child is not offered");
        let Want::Words(flags) = w(&["logs", "--n"]) else { panic!() };
        assert_eq!(flags, ["--namespace"], "global flags too");
        assert_eq!(w(&["completion", "z"]), Want::Words(vec!["zsh".into()]));
    }
}
