//! The handover rule of replicas that share the work, as a pure state machine: from what the
//! member Leases say, which member set this replica acts on and which logical clusters it may
//! write (the calls to the API server are in [`super::membership`]).
//!
//! Each replica advertises, in its own Lease, the digest of the member set it acts on (its
//! *view*). On every fresh list of the member Leases:
//!
//! - if the live members differ from its view, it **adopts** them as its new view: clusters
//!   it does not own under the new view stop being writable at once (the caller cancels their
//!   reconciles in flight), and only then does it advertise the new view;
//! - if every live member, itself included, advertises its view, the view is **confirmed**:
//!   the clusters it owns under it become writable.
//!
//! A cluster it owned under the confirmed view stays writable through later adoptions as
//! long as it owns it under each of them; a cluster it gains waits for the next confirmation.
//! So a replica writes a cluster only during a *stretch* that began with a listing in which
//! every member advertised a view giving it that cluster, and throughout which every view it
//! advertised gave it that cluster. Two replicas A and B cannot both write cluster `c`: if
//! A's stretch began first (at a listing where B advertised a view giving `c` to A), then B's
//! stretch, which contains that moment (as it began earlier than A's and still runs), would
//! have had B advertise a view not giving it `c`. The argument, with the timing side (a
//! member is dropped only after its Lease expired, by when it has stopped), is in
//! docs/decisions.md.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::rendezvous;

/// A member set, as identities.
pub type View = Arc<BTreeSet<String>>;

/// What a listing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the view stands (confirmed or still waiting for others to advertise it).
    Unchanged,
    /// A new view was adopted: stop writing what is no longer writable, then advertise
    /// [`Handover::advertised`].
    Adopted,
    /// The view was confirmed: clusters may have become writable (enqueue them).
    Confirmed,
}

/// One replica's handover state.
#[derive(Clone, Debug)]
pub struct Handover {
    me: String,
    /// The view acted on (advertised, or about to be).
    current: Option<View>,
    /// The last confirmed view, if any.
    confirmed: Option<View>,
    /// Every view adopted since the last confirmation (without repeats).
    adopted: BTreeSet<View>,
}

impl Handover {
    /// A replica with identity `me` that has seen nothing yet: nothing is writable.
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_string(),
            current: None,
            confirmed: None,
            adopted: BTreeSet::new(),
        }
    }

    /// This replica's identity.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The view acted on.
    pub fn view(&self) -> Option<&View> {
        self.current.as_ref()
    }

    /// Whether the view acted on is confirmed.
    pub fn is_confirmed(&self) -> bool {
        self.current.is_some() && self.adopted.is_empty() && self.current == self.confirmed
    }

    /// The digest to advertise in this replica's Lease (None before the first listing).
    pub fn advertised(&self) -> Option<String> {
        self.current.as_deref().map(rendezvous::digest)
    }

    /// Applies one fresh listing: `live` maps each member whose Lease has not expired to the
    /// digest it advertises (if any). This replica counts as a member whether or not its
    /// own Lease is listed; the view is confirmed only once its own Lease advertises it too.
    pub fn observe(&mut self, live: &BTreeMap<String, Option<String>>) -> Step {
        let mut members: BTreeSet<String> = live.keys().cloned().collect();
        members.insert(self.me.clone());
        if self.current.as_deref() != Some(&members) {
            let view: View = Arc::new(members);
            if self.confirmed.is_some() {
                self.adopted.insert(view.clone());
            }
            self.current = Some(view);
            return Step::Adopted;
        }
        let Some(view) = self.current.clone() else {
            return Step::Unchanged;
        };
        if self.is_confirmed() {
            return Step::Unchanged;
        }
        let digest = rendezvous::digest(&view);
        let everyone = view
            .iter()
            .all(|m| live.get(m).and_then(Option::as_deref) == Some(digest.as_str()));
        if !everyone {
            return Step::Unchanged;
        }
        self.confirmed = Some(view);
        self.adopted.clear();
        Step::Confirmed
    }

    /// Whether this replica may write `cluster` now.
    pub fn may_write(&self, cluster: &str) -> bool {
        let mine = |view: &View| rendezvous::owner(view, cluster) == Some(self.me.as_str());
        self.confirmed.as_ref().is_some_and(mine) && self.adopted.iter().all(mine)
    }

    /// Gives everything up (the Lease is lost or the process stops): nothing is writable.
    pub fn stop(&mut self) {
        self.current = None;
        self.confirmed = None;
        self.adopted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn listing(entries: &[(&str, Option<&Handover>)]) -> BTreeMap<String, Option<String>> {
        entries
            .iter()
            .map(|(id, h)| (id.to_string(), h.and_then(Handover::advertised)))
            .collect()
    }

    fn clusters() -> Vec<String> {
        (0..300).map(|i| format!("lc-{i}")).collect()
    }

    #[test]
    fn a_lone_replica_writes_everything_after_advertising_its_view_once() {
        let mut a = Handover::new("a");
        assert!(!a.may_write("lc-1"));
        assert_eq!(a.observe(&listing(&[("a", None)])), Step::Adopted);
        assert!(!a.may_write("lc-1"), "not before it advertised the view");
        let published = a.clone();
        assert_eq!(
            a.observe(&listing(&[("a", Some(&published))])),
            Step::Confirmed
        );
        assert!(clusters().iter().all(|c| a.may_write(c)));
        assert_eq!(
            a.observe(&listing(&[("a", Some(&published))])),
            Step::Unchanged
        );
    }

    #[test]
    fn a_newcomer_waits_until_the_old_owner_advertises_the_new_view() {
        let mut a = Handover::new("a");
        a.observe(&listing(&[("a", None)]));
        let a_alone = a.clone();
        a.observe(&listing(&[("a", Some(&a_alone))]));
        // b joins: it adopts {a, b} but a still advertises {a}.
        let mut b = Handover::new("b");
        b.observe(&listing(&[("a", Some(&a_alone)), ("b", None)]));
        let b_pub = b.clone();
        assert_eq!(
            b.observe(&listing(&[("a", Some(&a_alone)), ("b", Some(&b_pub))])),
            Step::Unchanged
        );
        let gained: Vec<String> = clusters()
            .into_iter()
            .filter(|c| rendezvous::owner(b.view().expect("b has a view"), c) == Some("b"))
            .collect();
        assert!(!gained.is_empty());
        assert!(gained.iter().all(|c| !b.may_write(c)), "b must wait");
        // a sees b: adopts {a, b}, stops writing b's share at once, keeps its own.
        assert_eq!(
            a.observe(&listing(&[("a", Some(&a_alone)), ("b", Some(&b_pub))])),
            Step::Adopted
        );
        assert!(gained.iter().all(|c| !a.may_write(c)));
        assert!(
            clusters()
                .iter()
                .filter(|c| !gained.contains(c))
                .all(|c| a.may_write(c)),
            "a keeps writing what it keeps"
        );
        let a_pub = a.clone();
        assert_eq!(
            b.observe(&listing(&[("a", Some(&a_pub)), ("b", Some(&b_pub))])),
            Step::Confirmed
        );
        assert!(gained.iter().all(|c| b.may_write(c)));
    }

    /// A member that cannot see everyone advertise its view writes nothing it gains.
    #[test]
    fn a_member_that_advertises_another_view_holds_back_every_gain() {
        let mut a = Handover::new("a");
        a.observe(&listing(&[("a", None), ("b", None)]));
        let a_pub = a.clone();
        assert_eq!(
            a.observe(&listing(&[("a", Some(&a_pub)), ("b", None)])),
            Step::Unchanged
        );
        assert!(clusters().iter().all(|c| !a.may_write(c)));
    }

    #[test]
    fn stopping_gives_everything_up() {
        let mut a = Handover::new("a");
        a.observe(&listing(&[("a", None)]));
        let p = a.clone();
        a.observe(&listing(&[("a", Some(&p))]));
        a.stop();
        assert!(clusters().iter().all(|c| !a.may_write(c)));
    }

    /// One step of the model: a replica lists the Leases (an atomic, fresh read), publishes
    /// its view, joins, or leaves (it stops writing and its Lease vanishes, as a crashed
    /// member's does once it expired, by when it has stopped: the timing side).
    #[derive(Clone, Debug)]
    enum Action {
        List(usize),
        Publish(usize),
        Join,
        Leave(usize),
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            6 => (0..6usize).prop_map(Action::List),
            6 => (0..6usize).prop_map(Action::Publish),
            1 => Just(Action::Join),
            1 => (0..6usize).prop_map(Action::Leave),
        ]
    }

    /// Replicas and their Leases as the API server holds them.
    struct Model {
        replicas: Vec<(Handover, Option<String>)>,
        joined: usize,
    }

    impl Model {
        fn new() -> Self {
            let mut model = Self {
                replicas: Vec::new(),
                joined: 0,
            };
            model.join();
            model
        }

        fn join(&mut self) {
            if self.replicas.len() < 6 {
                let me = format!("r{}", self.joined);
                self.joined += 1;
                self.replicas.push((Handover::new(&me), None));
            }
        }

        fn listing(&self) -> BTreeMap<String, Option<String>> {
            self.replicas
                .iter()
                .map(|(h, advertised)| (h.me().to_string(), advertised.clone()))
                .collect()
        }

        fn apply(&mut self, action: &Action) {
            let n = self.replicas.len();
            match *action {
                Action::List(i) if i < n => {
                    let listing = self.listing();
                    self.replicas[i].0.observe(&listing);
                }
                Action::Publish(i) if i < n => {
                    let (h, advertised) = &mut self.replicas[i];
                    *advertised = h.advertised();
                }
                Action::Join => self.join(),
                Action::Leave(i) if i < n && n > 1 => {
                    self.replicas.remove(i);
                }
                _ => {}
            }
        }

        fn writers(&self, cluster: &str) -> Vec<&str> {
            self.replicas
                .iter()
                .filter(|(h, _)| h.may_write(cluster))
                .map(|(h, _)| h.me())
                .collect()
        }

        /// Everyone lists and publishes until nothing changes.
        fn settle(&mut self) {
            for _ in 0..4 {
                for i in 0..self.replicas.len() {
                    self.apply(&Action::List(i));
                    self.apply(&Action::Publish(i));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the interleaving of listings, publications, joins and departures, no
        /// logical cluster is ever writable by two replicas; once they settle, each has
        /// exactly one writer among the live replicas.
        #[test]
        fn no_cluster_ever_has_two_writers_and_a_settled_fleet_covers_every_cluster(
            actions in proptest::collection::vec(action(), 1..120),
        ) {
            let clusters: Vec<String> = (0..40).map(|i| format!("lc-{i}")).collect();
            let mut model = Model::new();
            for action in &actions {
                model.apply(action);
                for c in &clusters {
                    let writers = model.writers(c);
                    prop_assert!(writers.len() <= 1, "{} written by {:?} after {:?}", c, writers, action);
                }
            }
            model.settle();
            for c in &clusters {
                prop_assert_eq!(model.writers(c).len(), 1, "{} after settling", c);
            }
        }
    }
}
