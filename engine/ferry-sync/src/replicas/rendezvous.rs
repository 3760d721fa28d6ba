//! Which member owns a logical cluster: rendezvous (highest random weight) hashing.
//!
//! Every member scores every logical cluster with a stable hash of (member, cluster); the
//! highest score owns it. Members agree without talking as soon as they agree on the member
//! set, a joining member takes only the clusters it now scores highest on (about 1/N, all
//! from others), and a departing member's clusters spread over the rest. SHA-256 is stable
//! across versions, processes and platforms, which a hasher with a per-process key is not.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// The score of `member` for `cluster`: the first 8 bytes of `SHA-256(member ‖ 0 ‖ cluster)`.
pub fn score(member: &str, cluster: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(member.as_bytes());
    hasher.update([0u8]);
    hasher.update(cluster.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The owner of `cluster` among `members` (None without members). Ties, which SHA-256 makes
/// practically impossible, go to the greater identity so every member still agrees.
pub fn owner<'a>(members: &'a BTreeSet<String>, cluster: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (score(m, cluster), m.as_str()))
        .map(String::as_str)
}

/// A short digest of a member set, which members advertise in their Lease to say which set
/// they act on (order-independent: the set is sorted).
pub fn digest(members: &BTreeSet<String>) -> String {
    let mut hasher = Sha256::new();
    for member in members {
        hasher.update(member.as_bytes());
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(members: &[&str]) -> BTreeSet<String> {
        members.iter().map(|m| m.to_string()).collect()
    }

    fn clusters(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("lc-{i:05}")).collect()
    }

    #[test]
    fn scores_are_stable_across_versions_and_platforms() {
        // Pinned: a change here would move every workspace at the next upgrade.
        assert_eq!(
            score("ferry-0_00000001", "2x8yw3z5c7"),
            0xce3f_2e6d_d1e0_0833
        );
        assert_eq!(digest(&set(&["a", "b"])), digest(&set(&["b", "a"])));
        assert_ne!(digest(&set(&["a", "b"])), digest(&set(&["ab"])));
    }

    #[test]
    fn no_member_owns_nothing() {
        assert_eq!(owner(&BTreeSet::new(), "lc"), None);
    }

    #[test]
    fn three_members_share_a_thousand_workspaces_about_evenly() {
        let members = set(&["replica-a_1", "replica-b_2", "replica-c_3"]);
        let mut counts = std::collections::BTreeMap::new();
        for c in clusters(3000) {
            *counts
                .entry(owner(&members, &c).expect("members own every cluster"))
                .or_insert(0) += 1;
        }
        for (member, count) in counts {
            assert!((850..=1150).contains(&count), "{member}: {count} of 3000");
        }
    }

    proptest! {
        /// Exactly one owner, a live member, whoever computes it.
        #[test]
        fn every_cluster_has_exactly_one_owner_among_the_members(
            members in proptest::collection::btree_set("[a-z]{1,6}_[0-9a-f]{8}", 1..8),
            cluster in "[a-z0-9]{1,16}",
        ) {
            let owner = owner(&members, &cluster).expect("members own every cluster");
            prop_assert!(members.contains(owner));
            let owners = members.iter().filter(|m| {
                members.iter().all(|o| (score(m, &cluster), m.as_str()) >= (score(o, &cluster), o.as_str()))
            }).count();
            prop_assert_eq!(owners, 1);
        }

        /// A join moves only clusters to the newcomer, about 1/(N+1) of them; a departure
        /// moves only the departed member's clusters.
        #[test]
        fn a_join_moves_only_the_newcomers_share_and_a_departure_only_the_departed_ones(
            members in proptest::collection::btree_set("[a-z]{1,6}_[0-9a-f]{8}", 1..6),
            newcomer in "[A-Z]{1,6}_[0-9a-f]{8}",
        ) {
            let before = members.clone();
            let mut after = members;
            after.insert(newcomer.clone());
            let all = clusters(2000);
            let mut moved = 0usize;
            for c in &all {
                let (was, is) = (owner(&before, c).expect("members own every cluster"), owner(&after, c).expect("members own every cluster"));
                if was != is {
                    prop_assert_eq!(is, newcomer.as_str(), "a join moved {} between old members", c);
                    moved += 1;
                }
                // The reverse: the newcomer leaves again.
                prop_assert_eq!(owner(&before, c), Some(was));
            }
            let expected = all.len() as f64 / after.len() as f64;
            prop_assert!(
                (moved as f64 - expected).abs() < expected * 0.25 + 20.0,
                "{} of {} moved to the newcomer of {} members", moved, all.len(), after.len()
            );
        }
    }
}
