//! Disk garbage collection in an engine: the decisions (when to run, what to prune and in which
//! order, when to stop, what to say), kept pure so they are tested without an engine. The requests
//! that carry them out are in `probe` (the bounded engine client).
//!
//! dockerd has no image GC of its own. When dockerd's accounted use (`docker system df`) exceeds the
//! class's `highPercent` of the volume, the operator prunes, in this order, until use is below
//! `lowPercent`: build cache, dangling images, unused images (no container uses them; the longest
//! unused first), stopped containers older than `minAge`, and volumes only when the class opts in.

use std::collections::HashSet;

use super::probe::Disk;
use crate::crd::DiskGc;

/// Whether a run is due: use above the high mark of a volume of `capacity` bytes.
pub fn due(policy: &DiskGc, disk: &Disk, capacity: Option<i64>) -> bool {
    capacity.is_some_and(|c| c > 0 && i128::from(disk.used()) * 100 > i128::from(c) * i128::from(policy.high_percent))
}

/// The use to prune down to, in bytes.
pub fn target(policy: &DiskGc, capacity: i64) -> i64 {
    (i128::from(capacity) * i128::from(policy.low_percent) / 100) as i64
}

/// How much build cache to keep so that pruning it frees `needed` bytes (all of it when it holds
/// less).
pub fn build_cache_keep(disk: &Disk, needed: i64) -> i64 {
    disk.build_cache.saturating_sub(needed.max(0)).max(0)
}

/// An image as `/images/json` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// `sha256:…`.
    pub id: String,
    /// Unix seconds when it was last tagged (pulled, loaded, built, tagged), else created: the
    /// closest dockerd comes to "last used".
    pub last_used: i64,
    /// Bytes only this image holds (its size less what it shares with other images).
    pub unique_size: i64,
}

/// The unused images in the order they are pruned: none that a container (in any state) was
/// created from, the longest unused first, ties by id (a stable order).
pub fn unused_images(images: Vec<Image>, in_use: &HashSet<String>) -> Vec<Image> {
    let mut unused: Vec<Image> = images.into_iter().filter(|i| !in_use.contains(&i.id)).collect();
    unused.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.id.cmp(&b.id)));
    unused
}

/// What one run freed, by step, in the order the steps ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// dockerd's accounted use before the run.
    pub before: i64,
    /// And after it.
    pub after: Disk,
    /// Bytes freed by each step that ran (use before the step less use after it, never negative).
    pub steps: Vec<(&'static str, i64)>,
    /// Unused images removed.
    pub images_removed: usize,
    /// A step that failed (the run stopped there).
    pub error: Option<String>,
}

impl Run {
    /// Bytes freed in all.
    pub fn freed(&self) -> i64 {
        self.steps.iter().map(|(_, n)| *n).fold(0, i64::saturating_add)
    }

    /// The Event note: what was freed, from where, and the use before and after.
    pub fn describe(&self, capacity: i64) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| {
                if *what == UNUSED_IMAGES {
                    format!("{} {what} ({})", bytes(*n), self.images_removed)
                } else {
                    format!("{} {what}", bytes(*n))
                }
            })
            .collect();
        let from = if steps.is_empty() { "nothing could be pruned".to_string() } else { steps.join(", ") };
        let mut note = format!(
            "disk garbage collection freed {}: {from}; use {}% -> {}% of the volume",
            bytes(self.freed()),
            percent(self.before, capacity),
            percent(self.after.used(), capacity)
        );
        if let Some(e) = &self.error {
            note += &format!("; stopped: {e}");
        }
        note
    }
}

/// Step names, as Events and the DiskPressure message say them.
pub const BUILD_CACHE: &str = "build cache";
/// Dangling images.
pub const DANGLING_IMAGES: &str = "dangling images";
/// Unused images.
pub const UNUSED_IMAGES: &str = "unused images";
/// Stopped containers.
pub const STOPPED_CONTAINERS: &str = "stopped containers";
/// Volumes.
pub const VOLUMES: &str = "unused volumes";

/// The DiskPressure message when use stays above the high mark: what holds the space, largest
/// first, and what the tenant can do.
pub fn pressure(policy: &DiskGc, disk: &Disk, capacity: i64) -> String {
    let mut holders = [
        ("images in use", disk.images),
        ("containers' writable layers", disk.containers),
        ("volumes", disk.volumes),
        ("build cache", disk.build_cache),
    ];
    holders.sort_by_key(|h| std::cmp::Reverse(h.1));
    let held: Vec<String> = holders.iter().filter(|(_, n)| *n > 0).map(|(w, n)| format!("{w} {}", bytes(*n))).collect();
    let volumes = if policy.prune_volumes { "" } else { " (volumes are never pruned: the class keeps them)" };
    format!(
        "dockerd uses {}% of the volume ({} of {}), above the class's {}% after garbage collection: {}{volumes}. \
         Remove containers or volumes you no longer need, or ask for a larger spec.storage.size",
        percent(disk.used(), capacity),
        bytes(disk.used()),
        bytes(capacity),
        policy.high_percent,
        held.join(", ")
    )
}

/// `part` as a whole percent of `whole` (rounded down; 0 for an empty whole).
pub fn percent(part: i64, whole: i64) -> i64 {
    if whole <= 0 { 0 } else { (i128::from(part.max(0)) * 100 / i128::from(whole)) as i64 }
}

/// Bytes in binary units for people: `512B`, `3.2Ki`, `15Gi`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut v = n.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 10.0 { format!("{v:.0}{}", UNITS[unit]) } else { format!("{v:.1}{}", UNITS[unit]) }
}

/// `s` percent-encoded for a URL query (everything but unreserved characters).
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: i64 = 1 << 30;

    fn policy() -> DiskGc {
        DiskGc::default()
    }

    #[test]
    fn the_default_policy_is_what_a_class_that_sets_nothing_gets() {
        let read: DiskGc = serde_json::from_value(serde_json::json!({})).expect("defaults");
        assert_eq!(DiskGc::default(), read);
        assert_eq!((read.high_percent, read.low_percent, read.min_age.as_str()), (85, 70, "1h"));
    }

    fn disk(images: i64, containers: i64, volumes: i64, build_cache: i64) -> Disk {
        Disk { images, containers, volumes, build_cache }
    }

    #[test]
    fn defaults_are_85_and_70_and_an_hour() {
        let p = policy();
        assert_eq!(
            (p.high_percent, p.low_percent, p.min_age.as_str(), p.prune_volumes, p.build_cache_percent),
            (85, 70, "1h", false, 10)
        );
    }

    #[test]
    fn a_run_is_due_only_above_the_high_mark_of_a_volume_with_a_size() {
        let p = policy();
        assert!(!due(&p, &disk(85 * GIB / 10, 0, 0, 0), Some(10 * GIB)), "85% is not above 85%");
        assert!(due(&p, &disk(86 * GIB / 10, 0, 0, 0), Some(10 * GIB)));
        assert!(!due(&p, &disk(100 * GIB, 0, 0, 0), None), "no size, no percent, no run");
        assert_eq!(target(&p, 10 * GIB), 7 * GIB);
    }

    #[test]
    fn build_cache_is_pruned_only_as_far_as_needed() {
        let d = disk(0, 0, 0, 3 * GIB);
        assert_eq!(build_cache_keep(&d, GIB), 2 * GIB);
        assert_eq!(build_cache_keep(&d, 5 * GIB), 0, "all of it when it holds less than is needed");
        assert_eq!(build_cache_keep(&d, -1), 3 * GIB);
    }

    #[test]
    fn unused_images_go_longest_unused_first_and_images_of_containers_never() {
        let img = |id: &str, last_used: i64| Image { id: id.into(), last_used, unique_size: 1 };
        let in_use: HashSet<String> = ["sha256:running".to_string(), "sha256:stopped".to_string()].into();
        let order = unused_images(
            vec![
                img("sha256:new", 300),
                img("sha256:running", 1),
                img("sha256:old", 100),
                img("sha256:stopped", 2),
                img("sha256:b", 200),
                img("sha256:a", 200),
            ],
            &in_use,
        );
        let ids: Vec<&str> = order.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["sha256:old", "sha256:a", "sha256:b", "sha256:new"]);
    }

    #[test]
    fn the_event_says_what_was_freed_from_where() {
        let run = Run {
            before: 9 * GIB,
            after: disk(5 * GIB, 0, GIB, 0),
            steps: vec![(BUILD_CACHE, GIB), (DANGLING_IMAGES, 0), (UNUSED_IMAGES, 2 * GIB)],
            images_removed: 3,
            error: None,
        };
        assert_eq!(run.freed(), 3 * GIB);
        assert_eq!(
            run.describe(10 * GIB),
            "disk garbage collection freed 3.0Gi: 1.0Gi build cache, 2.0Gi unused images (3); use 90% -> 60% of the volume"
        );
        let nothing = Run {
            before: 9 * GIB,
            after: disk(9 * GIB, 0, 0, 0),
            steps: vec![(BUILD_CACHE, 0)],
            error: Some("POST /build/prune answered 500".into()),
            ..Run::default()
        };
        assert!(
            nothing.describe(10 * GIB).contains("freed 0B: nothing could be pruned; use 90% -> 90%"),
            "{}",
            nothing.describe(10 * GIB)
        );
        assert!(nothing.describe(10 * GIB).ends_with("stopped: POST /build/prune answered 500"));
    }

    #[test]
    fn pressure_names_what_holds_the_space_largest_first() {
        let m = pressure(&policy(), &disk(GIB, 15 * GIB / 2, GIB / 2, 0), 10 * GIB);
        assert!(m.starts_with("dockerd uses 90% of the volume (9.0Gi of 10Gi), above the class's 85% after garbage collection: containers' writable layers 7.5Gi, images in use 1.0Gi, volumes 512Mi (volumes are never pruned"), "{m}");
    }

    #[test]
    fn filters_are_escaped_for_the_query() {
        assert_eq!(query_escape(r#"{"until":["1h"]}"#), "%7B%22until%22%3A%5B%221h%22%5D%7D");
    }
}
