//! The purity memo: a hook's validated answer kept by the digest of everything the answer can
//! depend on, so that a call whose input did not change is answered without running the
//! plugin again.
//!
//! Why this is sound: the contract (every version) assumes a hook's output depends only on
//! its inputs, and the sandbox enforces it (no clock, no randomness, no I/O, a fresh instance
//! per call). So the same component, configuration, transform policy, hook, context, targets
//! and object give the same answer. The key covers all of them; anything missing from it
//! would make the memo return a stale answer, which is what the tests below guard.
//!
//! Why a digest and not the input itself: keeping the inputs would double what the memo
//! holds (a 4 KB object per entry), and SHA-256 (with the CPU's SHA extensions) costs about
//! a microsecond per 4 KB, less than a fresh instance. A collision of SHA-256 is not a
//! practical concern.
//!
//! Only successful answers are kept: a failure is retried as the engine decides, and costs
//! what it always did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ferry_core::{Hook, ObjectContext, TransformPolicy};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A memo key: SHA-256 of the plugin's identity and one call's input.
pub(crate) type Key = [u8; 32];

/// Digest of what stays fixed for one loaded plugin: the component, its configuration and
/// the transform policy its output is validated against. Every key starts from it.
#[derive(Clone)]
pub(crate) struct PluginSeed(Sha256);

impl PluginSeed {
    pub(crate) fn new(component_digest: &str, config_json: &str, policy: &TransformPolicy) -> Self {
        let mut seed = KeyBuilder(Sha256::new());
        seed.bytes(b"ferry-wasm memo v1");
        seed.bytes(component_digest.as_bytes());
        seed.bytes(config_json.as_bytes());
        seed.json(policy);
        Self(seed.0)
    }

    /// Starts the key of one call of `hook`.
    pub(crate) fn key(&self, hook: Hook, context: &ObjectContext) -> KeyBuilder {
        let mut key = KeyBuilder(self.0.clone());
        key.bytes(hook.wit_name().as_bytes());
        key.json(context);
        key
    }
}

/// Adds a call's inputs to a key. Every field is length-prefixed, so that no two different
/// inputs can produce the same byte stream.
pub(crate) struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// Adds raw bytes (e.g. the object's JSON text).
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds a value by its JSON form (targets, downstream copies).
    pub(crate) fn json(&mut self, value: &impl Serialize) -> &mut Self {
        // Serialising plain structs of strings and maps cannot fail; if it ever did, an
        // empty field would only make a miss more likely, never a stale hit, because the
        // error text differs from every serialisation.
        let text = serde_json::to_vec(value).unwrap_or_else(|e| e.to_string().into_bytes());
        self.bytes(&text)
    }

    pub(crate) fn finish(&self) -> Key {
        self.0.clone().finalize().into()
    }
}

/// Answers by key, at most `capacity` of them. Eviction is by two generations: new answers go
/// into the current one; when it is full it becomes the previous one and the old previous
/// one is dropped; an answer found in the previous generation moves back to the current one.
/// That keeps what is used (an approximation of least-recently-used) at O(1) per call.
pub(crate) struct Memo<V> {
    /// Entries per generation; 0 disables the memo.
    generation_size: usize,
    state: Mutex<Generations<V>>,
}

struct Generations<V> {
    current: HashMap<Key, Arc<V>>,
    previous: HashMap<Key, Arc<V>>,
}

impl<V> Memo<V> {
    /// A memo of at most `capacity` answers (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            generation_size: capacity.div_ceil(2),
            state: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.generation_size > 0
    }

    /// The answer kept for `key`. The caller clones what it needs outside the lock.
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<V>> {
        if !self.enabled() {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = state.current.get(key) {
            return Some(Arc::clone(value));
        }
        let value = state.previous.remove(key)?;
        state.insert(*key, Arc::clone(&value), self.generation_size);
        Some(value)
    }

    /// Keeps `value` as the answer for `key`.
    pub(crate) fn insert(&self, key: Key, value: V) {
        if !self.enabled() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.insert(key, Arc::new(value), self.generation_size);
    }

    /// How many answers are kept (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.current.len() + state.previous.len()
    }
}

impl<V> Generations<V> {
    fn insert(&mut self, key: Key, value: Arc<V>, generation_size: usize) {
        if self.current.len() >= generation_size && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::Target;

    fn context() -> ObjectContext {
        ObjectContext {
            logical_cluster: "abc".into(),
            namespace: "default".into(),
            downstream_namespace: "ferry-1234".into(),
            ..ObjectContext::default()
        }
    }

    fn key(
        seed: &PluginSeed,
        hook: Hook,
        context: &ObjectContext,
        targets: &[Target],
        object: &str,
    ) -> Key {
        seed.key(hook, context)
            .json(&targets)
            .bytes(object.as_bytes())
            .finish()
    }

    #[test]
    fn every_input_of_an_answer_is_in_its_key() {
        let policy = TransformPolicy::default();
        let seed = PluginSeed::new("digest-a", "null", &policy);
        let targets = [Target::new("cluster-1").label("region", "eu")];
        let base = key(&seed, Hook::Transform, &context(), &targets, "{}");
        assert_eq!(
            base,
            key(&seed, Hook::Transform, &context(), &targets, "{}")
        );

        let mut changed = vec![
            // Another component, configuration or policy: another plugin.
            key(
                &PluginSeed::new("digest-b", "null", &policy),
                Hook::Transform,
                &context(),
                &targets,
                "{}",
            ),
            key(
                &PluginSeed::new("digest-a", "{\"x\":1}", &policy),
                Hook::Transform,
                &context(),
                &targets,
                "{}",
            ),
            key(
                &PluginSeed::new("digest-a", "null", &policy.clone().allow_rename(true)),
                Hook::Transform,
                &context(),
                &targets,
                "{}",
            ),
            key(&seed, Hook::Place, &context(), &targets, "{}"),
            key(&seed, Hook::Transform, &context(), &targets, "{ }"),
            key(
                &seed,
                Hook::Transform,
                &context(),
                &[Target::new("cluster-1")],
                "{}",
            ),
            key(
                &seed,
                Hook::Transform,
                &context(),
                &[Target::new("cluster-2").label("region", "eu")],
                "{}",
            ),
        ];
        let mut other = context();
        other.workspace_path = Some("root:org".into());
        changed.push(key(&seed, Hook::Transform, &other, &targets, "{}"));
        let mut other = context();
        other.workspace_labels.insert("tier".into(), "gold".into());
        changed.push(key(&seed, Hook::Transform, &other, &targets, "{}"));
        let mut other = context();
        other.downstream_namespace = "ferry-5678".into();
        changed.push(key(&seed, Hook::Transform, &other, &targets, "{}"));
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(*k, base, "change {i} kept the key");
        }
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let seed = PluginSeed::new("d", "null", &TransformPolicy::default());
        let a = seed
            .key(Hook::Transform, &context())
            .bytes(b"ab")
            .bytes(b"c")
            .finish();
        let b = seed
            .key(Hook::Transform, &context())
            .bytes(b"a")
            .bytes(b"bc")
            .finish();
        assert_ne!(a, b);
    }

    #[test]
    fn the_memo_holds_at_most_its_capacity_and_keeps_what_is_used() {
        let memo: Memo<u32> = Memo::new(4);
        let k = |n: u8| [n; 32];
        for n in 0..4 {
            memo.insert(k(n), u32::from(n));
        }
        // 0 and 1 went to the previous generation when 2 arrived; using 0 brings it back.
        assert_eq!(memo.get(&k(0)).as_deref(), Some(&0));
        for n in 4..6 {
            memo.insert(k(n), u32::from(n));
        }
        assert!(memo.len() <= 4, "{} entries", memo.len());
        assert_eq!(memo.get(&k(1)), None, "an unused old answer is dropped");
        assert_eq!(memo.get(&k(5)).as_deref(), Some(&5));
    }

    #[test]
    fn a_memo_of_capacity_zero_keeps_nothing() {
        let memo: Memo<u32> = Memo::new(0);
        memo.insert([1; 32], 1);
        assert_eq!(memo.get(&[1; 32]), None);
        assert_eq!(memo.len(), 0);
    }
}
