//! Capacity-weighted rendezvous hashing: plain Rust, unit-tested natively
//! (`cargo xtask plugins --test`).

/// The `count` names with the highest score for `identity`, in score order. Each name's score
/// is `capacity / -ln(u)` with `u` a hash of (identity, name) in (0, 1): the highest score
/// wins with probability proportional to capacity, the same identity always gets the same
/// answer, and removing a name moves only the identities that were on it. Capacity 0 never
/// wins.
pub fn weighted(identity: &str, candidates: &[(&str, u32)], count: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .iter()
        .filter(|(_, capacity)| *capacity > 0)
        .map(|(name, capacity)| {
            let u = unit(fnv1a(identity, name));
            (f64::from(*capacity) / -u.ln(), *name)
        })
        .collect();
    // Highest score first; ties (practically impossible) by name, so the order is total.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(count)
        .map(|(_, name)| name.to_owned())
        .collect()
}

/// FNV-1a over `identity`, a separator and `name`: stable across Rust versions and
/// platforms, unlike `std`'s hasher, so placements survive a rebuild of the plugin.
fn fnv1a(identity: &str, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in identity.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // A final mix: FNV's low bits are weak for short inputs that differ at the end.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// A hash as a number strictly between 0 and 1.
fn unit(hash: u64) -> f64 {
    ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_spread_in_proportion_to_capacity() {
        let candidates = [("big", 3), ("small", 1)];
        let big = (0..4000)
            .filter(|i| weighted(&format!("ws/ns/obj-{i}"), &candidates, 1) == ["big"])
            .count();
        // Expected 3000 of 4000; allow for hashing noise.
        assert!((2800..3200).contains(&big), "big got {big} of 4000");
    }

    #[test]
    fn a_drained_target_is_never_chosen_even_when_copies_exceed_the_rest() {
        let candidates = [("a", 1), ("drained", 0), ("b", 2)];
        for i in 0..100 {
            let chosen = weighted(&format!("obj-{i}"), &candidates, 3);
            assert_eq!(chosen.len(), 2);
            assert!(!chosen.iter().any(|c| c == "drained"));
        }
    }

    #[test]
    fn removing_a_target_moves_only_the_objects_that_were_on_it() {
        let all = [("a", 1), ("b", 1), ("c", 1)];
        let without_c = [("a", 1), ("b", 1)];
        for i in 0..500 {
            let id = format!("obj-{i}");
            let before = weighted(&id, &all, 1);
            if before != ["c"] {
                assert_eq!(weighted(&id, &without_c, 1), before, "{id} moved");
            }
        }
    }
}
