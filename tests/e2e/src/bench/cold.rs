//! The cold phase's figure: how many objects got every copy, how fast, and whether the engine
//! converged within its limit. An engine that does not converge still goes through the other
//! phases with the objects it copied; its cold figure says how far it got.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::Duration;

/// The limit for the cold phase when `--cold-limit-seconds` is not given: two minutes for
/// start-up plus a quarter of a second per object (370 s for the default 1,000 objects). A
/// fast engine converges long before it; a slow one is measured on what it copied by then.
pub fn default_limit(objects: usize) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(250) * objects as u32
}

/// Objects with a copy on every one of the targets (`copies` holds one set per target).
pub fn everywhere<K: Hash + Eq + Clone>(copies: &[HashSet<K>]) -> HashSet<K> {
    let Some((first, rest)) = copies.split_first() else {
        return HashSet::new();
    };
    first
        .iter()
        .filter(|k| rest.iter().all(|c| c.contains(*k)))
        .cloned()
        .collect()
}

/// Objects per second: `count` over `elapsed`, start-up included (0 for no time at all).
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    count as f64 / seconds
}

/// The table's cold cell: the rate when every copy arrived, otherwise how far the engine got
/// ("did not converge: 574 of 1000 copies in 410 s (1.4/s)").
pub fn figure(converged: bool, copies: usize, objects: usize, seconds: f64) -> String {
    let per_second = rate(copies, Duration::from_secs_f64(seconds.max(0.0)));
    if converged {
        format!("{per_second:.0}")
    } else {
        format!(
            "did not converge: {copies} of {objects} copies in {seconds:.0} s ({per_second:.1}/s)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_grows_with_the_objects() {
        assert_eq!(default_limit(0), Duration::from_secs(120));
        assert_eq!(default_limit(1000), Duration::from_secs(370));
        assert!(default_limit(10_000) > default_limit(1000));
    }

    #[test]
    fn an_object_counts_once_it_has_a_copy_on_every_target() {
        let one: HashSet<u32> = [1, 2, 3].into();
        let two: HashSet<u32> = [2, 3, 4].into();
        let mut got: Vec<u32> = everywhere(&[one.clone(), two]).into_iter().collect();
        got.sort_unstable();
        assert_eq!(got, [2, 3]);
        assert_eq!(everywhere(std::slice::from_ref(&one)), one);
        assert!(everywhere::<u32>(&[]).is_empty());
    }

    #[test]
    fn the_rate_is_copies_over_the_whole_phase() {
        assert_eq!(rate(500, Duration::from_secs(100)), 5.0);
        assert_eq!(rate(0, Duration::from_secs(100)), 0.0);
        assert_eq!(rate(10, Duration::ZERO), 0.0);
    }

    #[test]
    fn a_converged_engine_shows_its_rate() {
        assert_eq!(figure(true, 1000, 1000, 20.0), "50");
    }

    #[test]
    fn an_engine_that_did_not_converge_says_how_far_it_got() {
        assert_eq!(
            figure(false, 574, 1000, 410.0),
            "did not converge: 574 of 1000 copies in 410 s (1.4/s)"
        );
        assert_eq!(
            figure(false, 0, 200, 340.0),
            "did not converge: 0 of 200 copies in 340 s (0.0/s)"
        );
    }
}
