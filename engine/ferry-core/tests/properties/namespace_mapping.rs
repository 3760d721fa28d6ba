//! `downstream_namespace` maps distinct (logical cluster, namespace) pairs to distinct
//! namespaces, and always to a valid namespace name.
//!
//! The mapping is SHA-256 truncated to 64 bits, so injectivity can only be shown
//! probabilistically: no collision among many distinct pairs, the adversarial ones included
//! (pairs that differ only in where the two names split, swapped names, unicode, empty and very
//! long names). By the birthday bound, an ideal 64-bit hash collides among the ~200,000 pairs
//! of the dedicated test with a probability of about 1e-9; the inputs are fixed, so that test
//! never flakes.
//!
//! The domain is names without NUL. The mapping hashes `cluster`, a NUL, then `namespace`, so a
//! NUL inside a name would make ("a\0", "b") and ("a", "\0b") one input; Kubernetes
//! namespaces are DNS labels and kcp's logical cluster names are lower-case alphanumerics, so
//! neither ever holds one. Validity of the output is checked over every string, NUL included.

use std::collections::HashMap;

use ferry_core::identity::{UpstreamKey, downstream_namespace};
use proptest::prelude::*;
use proptest::sample::Index;

/// A DNS-1123 label, what Kubernetes accepts as a namespace name.
fn is_dns1123_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Any character but NUL (see the module documentation), biased towards the characters a
/// careless encoding would use as a separator.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>().prop_filter("NUL is outside the domain", |c| *c != '\0'),
        2 => prop::sample::select(vec!['a', 'b', '-', '/', ':', '|', '.', '_', ' ', 'é', '日']),
    ]
}

/// A name as Kubernetes or kcp make them, or any other string of the domain.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        3 => prop::collection::vec(name_char(), 0..24).prop_map(String::from_iter),
        1 => Just(String::new()),
        1 => (name_char(), 1000..4000usize).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// Any string at all, NUL included.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<char>(), 0..200).prop_map(String::from_iter),
        name(),
    ]
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn every_pair_maps_to_a_valid_namespace_name_and_always_the_same_one(
        cluster in any_string(),
        namespace in any_string(),
    ) {
        let mapped = downstream_namespace(&cluster, &namespace);
        prop_assert!(is_dns1123_label(&mapped), "{mapped:?} is not a DNS-1123 label");
        prop_assert!(mapped.starts_with("ferry-"), "{mapped:?}");
        prop_assert_eq!(&mapped, &downstream_namespace(&cluster, &namespace));
        prop_assert_eq!(
            &mapped,
            &UpstreamKey::new(cluster, namespace, "any").downstream_namespace()
        );
    }

    #[test]
    fn pairs_that_differ_only_in_where_the_names_split_map_apart(
        joined in prop::collection::vec(name_char(), 1..40),
        first in any::<Index>(),
        second in any::<Index>(),
    ) {
        // Split points 0..=len: ("", whole) and (whole, "") included.
        let (i, j) = (first.index(joined.len() + 1), second.index(joined.len() + 1));
        prop_assume!(i != j);
        let split = |at: usize| -> (String, String) {
            (joined[..at].iter().collect(), joined[at..].iter().collect())
        };
        let (a, b) = (split(i), split(j));
        prop_assert_ne!(
            downstream_namespace(&a.0, &a.1),
            downstream_namespace(&b.0, &b.1),
            "{:?} and {:?} map to the same namespace", a, b
        );
    }

    #[test]
    fn swapping_cluster_and_namespace_maps_apart(a in name(), b in name()) {
        prop_assume!(a != b);
        prop_assert_ne!(downstream_namespace(&a, &b), downstream_namespace(&b, &a));
    }

    #[test]
    fn distinct_pairs_map_apart(first in (name(), name()), second in (name(), name())) {
        prop_assume!(first != second);
        prop_assert_ne!(
            downstream_namespace(&first.0, &first.1),
            downstream_namespace(&second.0, &second.1),
            "{:?} and {:?} map to the same namespace", first, second
        );
    }
}

/// SplitMix64: a fixed, dependency-free stream of pseudo-random numbers, so the big test
/// below checks the same pairs on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `len` characters drawn from `alphabet`.
    fn text(&mut self, alphabet: &[char], len: usize) -> String {
        (0..len)
            .map(|_| {
                let i = usize::try_from(self.next() % alphabet.len() as u64).unwrap_or(0);
                alphabet[i]
            })
            .collect()
    }
}

/// Mapped namespaces seen so far, each with the one pair that produced it.
#[derive(Default)]
struct Seen(HashMap<String, (String, String)>);

impl Seen {
    fn check(&mut self, cluster: String, namespace: String) {
        let mapped = downstream_namespace(&cluster, &namespace);
        assert!(is_dns1123_label(&mapped), "{mapped:?}");
        let pair = (cluster, namespace);
        if let Some(earlier) = self.0.get(&mapped) {
            assert_eq!(earlier, &pair, "two pairs map to {mapped}");
        } else {
            self.0.insert(mapped, pair);
        }
    }
}

#[test]
fn two_hundred_thousand_distinct_pairs_map_to_distinct_namespaces() {
    let mut seen = Seen::default();
    let mut rng = SplitMix(0x00F3_7721);
    let base36: Vec<char> = ('a'..='z').chain('0'..='9').collect();

    // Realistic: kcp-style logical cluster names (16 base-36 characters, e.g. 2x8ek3jzmkrdiv6n)
    // against the namespaces tenants use.
    let clusters: Vec<String> = (0..400).map(|_| rng.text(&base36, 16)).collect();
    let mut namespaces: Vec<String> = ["default", "kube-system", "kube-public", "ferry", ""]
        .into_iter()
        .map(String::from)
        .collect();
    namespaces.extend((0..200).map(|i| format!("team-{i}")));
    while namespaces.len() < 400 {
        let len = 1 + usize::try_from(rng.next() % 63).unwrap_or(0);
        let namespace = rng.text(&base36, len);
        if !namespaces.contains(&namespace) {
            namespaces.push(namespace);
        }
    }
    for cluster in &clusters {
        for namespace in &namespaces {
            seen.check(cluster.clone(), namespace.clone());
        }
    }

    // Adversarial: every split of strings over a small alphabet that includes the characters
    // a separator would be made of, so that many pairs concatenate to the same text.
    let alphabet = ['a', 'b', '-', ':', '/', '|', 'é', '日'];
    for _ in 0..2000 {
        let joined: Vec<char> = rng.text(&alphabet, 19).chars().collect();
        for at in 0..=joined.len() {
            seen.check(joined[..at].iter().collect(), joined[at..].iter().collect());
        }
    }

    // Edge cases: empty names, very long names that differ in one place, unicode that looks
    // the same in another normal form, a name against itself.
    seen.check(String::new(), String::new());
    for long in [1000, 4096, 10_000] {
        for at in [0, 1, long / 2, long - 1, long] {
            let text = "x".repeat(long);
            seen.check(text[..at].to_string(), text[at..].to_string());
        }
    }
    seen.check("\u{e9}".into(), "ns".into());
    seen.check("e\u{301}".into(), "ns".into());
    seen.check("same".into(), "same".into());

    assert!(seen.0.len() >= 200_000, "only {} pairs", seen.0.len());
}
