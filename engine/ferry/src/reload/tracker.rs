//! When to try a changed plugin file: the reload state machine of one watched file, pure
//! (no I/O, no clock) so every transition is unit-tested.
//!
//! The watcher polls the file's SHA-256 digest. A new digest is tried only once it has been
//! seen on two polls in a row: a file being written (a `cp` over it, a slow editor) is never
//! loaded half-way, and a refused digest is never tried (or reported) again until the file
//! changes once more. The kubelet's ConfigMap update (a new `..2026_...` folder, then an
//! atomic swap of the `..data` symlink) is seen as one change of the path's content.

/// What the poll of a file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The file's content has this SHA-256 digest.
    Digest(String),
    /// The file could not be read (the message says why).
    Unreadable(String),
}

/// What the watcher does after a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: unchanged, settling, or already refused.
    Wait,
    /// Load, configure, check and swap in the component with this digest, then report the
    /// outcome with [`Tracker::tried`].
    Try(String),
    /// The file cannot be read; the running version stays. Reported once per outage.
    Unreadable(String),
    /// The file is back to the running version after a refused or unreadable change.
    Restored,
}

/// The reload state of one watched file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    /// The digest of the component that runs (the last-known-good).
    running: String,
    state: State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// The file holds the running version.
    Steady,
    /// The file changed to this digest on the last poll; tried if the next poll agrees.
    Settling(String),
    /// This digest was tried and refused.
    Refused(String),
    /// The file could not be read on the last poll (already reported).
    Unreadable,
}

impl Tracker {
    /// A file whose content, loaded at start-up, has `digest`.
    pub fn new(digest: impl Into<String>) -> Self {
        Self {
            running: digest.into(),
            state: State::Steady,
        }
    }

    /// The digest of the component that runs.
    pub fn running(&self) -> &str {
        &self.running
    }

    /// The next step after a poll found `seen`.
    pub fn observe(&mut self, seen: Seen) -> Step {
        let digest = match seen {
            Seen::Unreadable(why) => {
                if self.state == State::Unreadable {
                    return Step::Wait;
                }
                self.state = State::Unreadable;
                return Step::Unreadable(why);
            }
            Seen::Digest(digest) => digest,
        };
        if digest == self.running {
            let was = std::mem::replace(&mut self.state, State::Steady);
            return match was {
                State::Refused(_) | State::Unreadable => Step::Restored,
                State::Steady | State::Settling(_) => Step::Wait,
            };
        }
        match &self.state {
            State::Refused(refused) if *refused == digest => Step::Wait,
            State::Settling(settling) if *settling == digest => Step::Try(digest),
            _ => {
                self.state = State::Settling(digest);
                Step::Wait
            }
        }
    }

    /// The attempt to swap in `digest` ended: it runs now (`loaded`), or it was refused and
    /// is not tried again until the file changes.
    pub fn tried(&mut self, digest: &str, loaded: bool) {
        if loaded {
            self.running = digest.to_string();
            self.state = State::Steady;
        } else {
            self.state = State::Refused(digest.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(d: &str) -> Seen {
        Seen::Digest(d.into())
    }

    #[test]
    fn an_unchanged_file_is_never_tried() {
        let mut tracker = Tracker::new("a");
        for _ in 0..3 {
            assert_eq!(tracker.observe(digest("a")), Step::Wait);
        }
    }

    #[test]
    fn a_change_is_tried_once_two_polls_agree_and_then_runs() {
        let mut tracker = Tracker::new("a");
        assert_eq!(tracker.observe(digest("b")), Step::Wait);
        assert_eq!(tracker.observe(digest("b")), Step::Try("b".into()));
        tracker.tried("b", true);
        assert_eq!(tracker.running(), "b");
        assert_eq!(tracker.observe(digest("b")), Step::Wait);
    }

    #[test]
    fn a_file_still_being_written_is_not_tried() {
        let mut tracker = Tracker::new("a");
        // Each poll sees another partial content: none is tried.
        for partial in ["b1", "b2", "b3"] {
            assert_eq!(tracker.observe(digest(partial)), Step::Wait);
        }
        assert_eq!(tracker.observe(digest("b")), Step::Wait);
        assert_eq!(tracker.observe(digest("b")), Step::Try("b".into()));
    }

    #[test]
    fn a_refused_digest_keeps_the_running_one_and_is_not_tried_again() {
        let mut tracker = Tracker::new("a");
        tracker.observe(digest("bad"));
        assert_eq!(tracker.observe(digest("bad")), Step::Try("bad".into()));
        tracker.tried("bad", false);
        assert_eq!(tracker.running(), "a");
        for _ in 0..3 {
            assert_eq!(tracker.observe(digest("bad")), Step::Wait);
        }
        // The next change is tried as usual.
        tracker.observe(digest("good"));
        assert_eq!(tracker.observe(digest("good")), Step::Try("good".into()));
    }

    #[test]
    fn going_back_to_the_running_version_after_a_refusal_is_reported_once() {
        let mut tracker = Tracker::new("a");
        tracker.observe(digest("bad"));
        tracker.observe(digest("bad"));
        tracker.tried("bad", false);
        assert_eq!(tracker.observe(digest("a")), Step::Restored);
        assert_eq!(tracker.observe(digest("a")), Step::Wait);
        // The same broken file again is a new change: tried (and reported) again.
        tracker.observe(digest("bad"));
        assert_eq!(tracker.observe(digest("bad")), Step::Try("bad".into()));
    }

    #[test]
    fn an_unreadable_file_is_reported_once_and_the_running_version_stays() {
        let mut tracker = Tracker::new("a");
        let gone = || Seen::Unreadable("no such file".into());
        assert_eq!(
            tracker.observe(gone()),
            Step::Unreadable("no such file".into())
        );
        assert_eq!(tracker.observe(gone()), Step::Wait);
        assert_eq!(tracker.running(), "a");
        assert_eq!(tracker.observe(digest("a")), Step::Restored);
    }

    #[test]
    fn a_change_back_before_it_settles_is_no_change() {
        let mut tracker = Tracker::new("a");
        tracker.observe(digest("b"));
        assert_eq!(tracker.observe(digest("a")), Step::Wait);
        // "b" must be seen twice in a row again.
        assert_eq!(tracker.observe(digest("b")), Step::Wait);
        assert_eq!(tracker.observe(digest("b")), Step::Try("b".into()));
    }
}
