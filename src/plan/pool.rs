//! Pure: what a DockerSandboxPool does next, from the pooled sandboxes it has. Sizing (how many to
//! start, which to delete), rollout (a template change replaces ready engines one by one, never all
//! at once), selection for a claim (the oldest ready engine of the current template first) and the
//! class's cap on pool sizes per namespace.

use sha2::Digest;

use crate::crd::{DockerSandboxSpec, Phase};

/// One unclaimed sandbox of a pool, as the pool controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// The template hash it was made from.
    pub hash: String,
    /// Whether its engine answers (phase Ready).
    pub ready: bool,
    /// Its creation time, in seconds since the epoch (older engines are claimed first).
    pub created: i64,
    /// Its phase and the reason and message of its Ready condition, while it is not ready.
    pub waiting: Option<(Phase, String, String)>,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// How many sandboxes to start from the current template.
    pub create: usize,
    /// The sandboxes to delete.
    pub delete: Vec<String>,
}

/// The hash that names a template: its spec and class as the pooled sandboxes would have them, and
/// the class generation (a class change replaces the engines too). 10 hex characters, a label value.
pub fn template_hash(spec: &DockerSandboxSpec, class_generation: i64) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{text}\n{class_generation}").as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// The next steps for a pool that should keep `replicas` ready engines of template `hash`, letting
/// at most `max_surge` more than `replicas` exist during a rollout.
///
/// - Engines of the current template are started until there are `replicas` of them; all at once
///   when nothing is rolling, else only as far as `replicas + max_surge` in all.
/// - An engine of an old template that is not ready goes at once; a ready one only when another is
///   ready to take its place (ready engines in all never drop below `replicas` by a rollout).
/// - Surplus engines of the current template (the pool was scaled down) go, those not ready first,
///   then the youngest.
pub fn steps(replicas: i32, max_surge: i32, hash: &str, members: &[Member]) -> Steps {
    let replicas = replicas.max(0) as usize;
    let surge = max_surge.max(1) as usize;
    let (current, old): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|m| m.hash == hash);
    let mut delete = Vec::new();

    // Surplus of the current template: not ready first, then the youngest.
    let surplus = current.len().saturating_sub(replicas);
    let mut cut: Vec<&Member> = current.clone();
    cut.sort_by_key(|m| (m.ready, std::cmp::Reverse(m.created)));
    delete.extend(cut.iter().take(surplus).map(|m| m.name.clone()));
    let current_ready = current.iter().filter(|m| m.ready && !delete.contains(&m.name)).count();
    let current_kept = current.len() - surplus;

    // Old templates: the not-ready go now; the ready while enough others are ready.
    let (old_ready, old_waiting): (Vec<&Member>, Vec<&Member>) = old.iter().partition(|m| m.ready);
    delete.extend(old_waiting.iter().map(|m| m.name.clone()));
    let mut oldest_first = old_ready.clone();
    oldest_first.sort_by_key(|m| m.created);
    let spare = (current_ready + old_ready.len()).saturating_sub(replicas);
    let retire = if replicas == 0 { old_ready.len() } else { spare.min(old_ready.len()) };
    delete.extend(oldest_first.iter().take(retire).map(|m| m.name.clone()));
    let old_kept = old_ready.len() - retire;

    let missing = replicas.saturating_sub(current_kept);
    let room = (replicas + surge).saturating_sub(current_kept + old_kept);
    let create = if old_kept == 0 { missing } else { missing.min(room) };
    Steps { create, delete }
}

/// The engine a claim takes: the oldest ready one of the current template, else the oldest ready
/// one of an older template (during a rollout most ready engines are old; a claim is still served
/// warm, with the template the pool had a moment ago).
pub fn pick<'a>(hash: &str, members: &'a [Member]) -> Option<&'a Member> {
    members.iter().filter(|m| m.ready).min_by_key(|m| (m.hash != hash, m.created))
}

/// The pool's counts: ready, creating (not ready yet) and ready of the current template.
pub fn counts(hash: &str, members: &[Member]) -> (i32, i32, i32) {
    let ready = members.iter().filter(|m| m.ready).count() as i32;
    let updated = members.iter().filter(|m| m.ready && m.hash == hash).count() as i32;
    (ready, members.len() as i32 - ready, updated)
}

/// Why the pool is not refilling, if it is not: a sandbox of the current template that failed (its
/// Ready reason: policy, image), waits on something outside, or fits no node.
pub fn refill_problem(hash: &str, members: &[Member]) -> Option<(String, String)> {
    // Failed (cannot be placed, does not start), Pending (waits on something outside: a volume, a
    // RuntimeClass), or a pod the scheduler cannot place.
    let stuck = |m: &&Member| match &m.waiting {
        Some((Phase::Failed | Phase::Pending, ..)) => true,
        Some((_, reason, _)) => reason == crate::crd::conditions::reason::UNSCHEDULABLE,
        None => false,
    };
    let member = members.iter().filter(|m| m.hash == hash && !m.ready).find(stuck)?;
    let (_, reason, message) = member.waiting.clone()?;
    Some((reason, format!("sandbox {}: {message}", member.name)))
}

/// The replicas a pool may keep under its class's cap on ready engines per namespace (`cap`), given
/// what the namespace's other pools of the class keep (`others`): all of `wanted` when it fits,
/// else what is left (never below 0), with a message saying so.
pub fn capped(wanted: i32, cap: Option<i32>, others: i32) -> (i32, Option<String>) {
    let Some(cap) = cap else { return (wanted, None) };
    let left = (cap - others).max(0);
    if wanted <= left {
        return (wanted, None);
    }
    let message = format!(
        "the class allows {cap} pooled engines in this namespace and its other pools keep {others}: this pool keeps \
         {left}, not {wanted}"
    );
    (left, Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, hash: &str, ready: bool, created: i64) -> Member {
        Member { name: name.into(), hash: hash.into(), ready, created, waiting: None }
    }

    /// Runs a rollout to its end: each step's deletions happen, its creations start (not ready),
    /// then every starting engine becomes ready; returns the fewest ready engines seen.
    fn roll(replicas: i32, surge: i32, mut members: Vec<Member>, hash: &str) -> (Vec<Member>, usize, usize) {
        let mut fewest = usize::MAX;
        let mut rounds = 0;
        let mut next = 100;
        loop {
            rounds += 1;
            assert!(rounds < 50, "the rollout ends: {members:?}");
            let s = steps(replicas, surge, hash, &members);
            assert!(
                members.len() - s.delete.len() + s.create <= (replicas + surge) as usize,
                "never more than replicas + surge"
            );
            members.retain(|x| !s.delete.contains(&x.name));
            fewest = fewest.min(members.iter().filter(|x| x.ready).count());
            if s.create == 0 && s.delete.is_empty() {
                return (members, fewest, rounds);
            }
            for _ in 0..s.create {
                next += 1;
                members.push(m(&format!("n{next}"), hash, false, next));
            }
            for x in members.iter_mut() {
                x.ready = true;
            }
        }
    }

    #[test]
    fn an_empty_pool_starts_all_its_engines_at_once_and_a_full_one_does_nothing() {
        assert_eq!(steps(3, 1, "h", &[]), Steps { create: 3, delete: vec![] });
        let full = [m("a", "h", true, 1), m("b", "h", false, 2), m("c", "h", true, 3)];
        assert_eq!(steps(3, 1, "h", &full), Steps::default(), "starting engines count");
        // A claim took one: the pool starts one more at once.
        assert_eq!(steps(3, 1, "h", &full[..2]), Steps { create: 1, delete: vec![] });
    }

    #[test]
    fn scaling_down_deletes_the_not_ready_first_then_the_youngest() {
        let members = [m("a", "h", true, 1), m("b", "h", false, 2), m("c", "h", true, 3), m("d", "h", true, 4)];
        assert_eq!(steps(2, 1, "h", &members).delete, vec!["b", "d"]);
        assert_eq!(steps(0, 1, "h", &members).delete.len(), 4);
        assert_eq!(steps(0, 1, "h", &[m("x", "old", true, 1)]).delete, vec!["x"], "to zero: old ones go too");
    }

    #[test]
    fn a_template_change_replaces_ready_engines_one_by_one_never_below_replicas() {
        let old: Vec<Member> = (0..4).map(|i| m(&format!("o{i}"), "old", true, i)).collect();
        let first = steps(4, 1, "new", &old);
        assert_eq!(
            first,
            Steps { create: 1, delete: vec![] },
            "surge first: nothing deleted before a new one is ready"
        );
        let (end, fewest, _) = roll(4, 1, old.clone(), "new");
        assert_eq!(end.len(), 4);
        assert!(end.iter().all(|x| x.hash == "new" && x.ready), "{end:?}");
        assert!(fewest >= 4, "ready engines never dropped below replicas: {fewest}");
        // A bigger surge goes faster, with the same guarantee.
        let (_, fewest2, rounds2) = roll(4, 3, old.clone(), "new");
        let (_, _, rounds1) = roll(4, 1, old, "new");
        assert!(fewest2 >= 4 && rounds2 <= rounds1, "{rounds2} <= {rounds1}");
        // Old engines that never became ready are deleted at once (they serve nobody), and free
        // their room: 1 old ready engine kept, 2 new ones started (replicas + surge = 3).
        let stuck = [m("o1", "old", false, 1), m("o2", "old", true, 2)];
        assert_eq!(steps(2, 1, "new", &stuck), Steps { create: 2, delete: vec!["o1".into()] });
    }

    #[test]
    fn the_oldest_ready_engine_of_the_current_template_is_claimed_first() {
        let members = [
            m("young", "h", true, 9),
            m("old-tpl", "x", true, 1),
            m("starting", "h", false, 0),
            m("oldest", "h", true, 5),
        ];
        assert_eq!(pick("h", &members).map(|x| x.name.as_str()), Some("oldest"));
        assert_eq!(pick("h", &members[1..2]).map(|x| x.name.as_str()), Some("old-tpl"), "else an old template's");
        assert_eq!(pick("h", &members[2..3]), None, "nothing ready: a cold start");
        assert_eq!(counts("h", &members), (3, 1, 2));
    }

    #[test]
    fn a_failing_refill_names_the_sandbox_and_its_reason() {
        let mut failed = m("p-1", "h", false, 1);
        failed.waiting = Some((Phase::Failed, "ImageNotAllowed".into(), "image x is not allowed".into()));
        let mut starting = m("p-2", "h", false, 2);
        starting.waiting = Some((Phase::Provisioning, "PodStarting".into(), "starting".into()));
        assert_eq!(refill_problem("h", std::slice::from_ref(&starting)), None, "starting is not a problem");
        assert_eq!(
            refill_problem("h", &[starting, failed]),
            Some(("ImageNotAllowed".into(), "sandbox p-1: image x is not allowed".into()))
        );
    }

    #[test]
    fn the_class_cap_leaves_a_pool_what_the_other_pools_do_not_keep() {
        assert_eq!(capped(5, None, 100), (5, None));
        assert_eq!(capped(3, Some(10), 7), (3, None));
        let (n, why) = capped(5, Some(10), 7);
        assert_eq!(n, 3);
        assert!(why.expect("a message").contains("keeps 3, not 5"));
        assert_eq!(capped(2, Some(4), 9).0, 0);
    }

    #[test]
    fn the_template_hash_moves_with_the_spec_and_the_class_generation() {
        let spec = DockerSandboxSpec::default();
        let h = template_hash(&spec, 1);
        assert_eq!(h.len(), 10);
        assert_eq!(h, template_hash(&spec, 1));
        assert_ne!(h, template_hash(&spec, 2));
        let other = DockerSandboxSpec { image: Some("docker:27-dind".into()), ..spec };
        assert_ne!(h, template_hash(&other, 1));
    }
}
