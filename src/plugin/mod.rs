//! `kubectl dsb`: the kubectl plugin that connects a docker client to a DockerSandbox in one
//! command. Built as the second binary `kubectl-dsb` of this crate, so it reads the sandbox with the
//! operator's own types and names its children the way the operator does.
//!
//! - `cli`: the command line (clap), `error`: what can go wrong, in words a user can act on;
//! - `cluster`: reads from the API server (sandbox, client Secret, Service);
//! - `files`: the certificate bundle and the docker context on this machine;
//! - `tunnel`: the local listener, one port-forward stream per client connection;
//! - `connect`: `connect` / `disconnect` (foreground, or `--background` with a pid file);
//! - `commands`: `env`, `bundle`, `ls`, `logs`, `df`, `prune`, `completion`;
//! - `lifecycle`: `suspend`, `resume`, and the wake `connect`'s tunnel asks for;
//! - `complete`: `kubectl dsb <TAB>` through kubectl (as `kubectl_complete-dsb`).

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod complete;
pub mod connect;
pub mod error;
pub mod files;
pub mod lifecycle;
pub mod tunnel;

use cli::{Cli, Command};

/// `s` without control characters (tabs kept): text that comes from an engine or a status (a
/// tenant's dockerd log, a condition quoting it) cannot move the cursor, recolour or rewrite the
/// terminal it is printed to.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| *c == '\t' || !c.is_control()).collect()
}

/// Runs one `kubectl dsb` command.
pub async fn run(cli: Cli) -> error::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Connect(args) => connect::connect(g, args).await,
        Command::Disconnect(target) => connect::disconnect(g, target).await,
        Command::Env(args) => commands::env(g, args).await,
        Command::Bundle(args) => commands::bundle(g, args).await,
        Command::Ls(args) => commands::ls(g, args).await,
        Command::Logs(args) => commands::logs(g, args).await,
        Command::Df(target) => commands::df(g, target).await,
        Command::Prune(args) => commands::prune(g, args).await,
        Command::Suspend(args) => lifecycle::suspend(g, args).await,
        Command::Resume(args) => lifecycle::resume(g, args).await,
        Command::Completion(args) => {
            commands::completion(args);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(super::printable("ok\u{1b}]0;pwned\u{7}\r\x08\tnext\u{9b}2J"), "ok]0;pwned\tnext2J");
    }
}
