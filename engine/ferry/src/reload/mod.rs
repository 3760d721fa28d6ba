//! Hot reload of plugins in `ferry run`: the plugin files are polled by SHA-256 digest; a
//! changed component is loaded, configured and checked against its golden cases for every
//! reference that uses the file, then swapped into the chains of those resources at once
//! ([`LiveChain::swap`]), and the engine reconciles their objects with it. A component that
//! fails any step is refused for every reference, the last-known-good keeps running, and a
//! Warning log line and `ferry_plugin_reloads_total` say why (docs/plugins.md, "Hot reload").
//!
//! Polling rather than inotify (docs/decisions.md): a deployed plugin is a file of a mounted
//! ConfigMap or volume, which the kubelet updates by swapping a `..data` symlink; reading the
//! path sees every such swap, on any filesystem, without tracking which inode to watch.

pub mod component;
#[cfg(test)]
mod tests;
pub mod tracker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_sync::metrics::Metrics;
use ferry_wasm::{Plugin, Runtime};
use sha2::{Digest, Sha256};

use crate::chain::WasmChain;
use crate::live_chain::LiveChain;
use component::{Reference, Refusal, Slot};
use tracker::{Seen, Step, Tracker};

/// One watched component file and the references that use it.
struct Watched {
    path: PathBuf,
    tracker: Tracker,
    /// Indexes into [`Reloader::references`].
    references: Vec<usize>,
}

/// The plugins of a running engine, and what is needed to swap them.
pub struct Reloader {
    runtime: Runtime,
    metrics: Arc<Metrics>,
    references: Vec<Reference>,
    /// The running plugin of each reference (same order as `references`).
    running: Vec<Plugin>,
    files: Vec<Watched>,
    /// The chain of each resource, by its index in `resources:`.
    chains: BTreeMap<usize, Arc<LiveChain>>,
}

/// How a poll's attempt at a changed file ended (for tests and logs).
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The component with this digest runs now.
    Loaded(String),
    /// The component with this digest was refused; the running one stays.
    Refused(String),
}

impl Reloader {
    /// Loads every reference from its file (each checked like a reload would be) and builds
    /// each resource's chain. An error names the reference and fails start-up.
    pub fn start(
        runtime: Runtime,
        references: Vec<Reference>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut running = Vec::new();
        let mut files: Vec<Watched> = Vec::new();
        for (i, reference) in references.iter().enumerate() {
            let bytes = std::fs::read(&reference.path).map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read plugin {} ({}): {e}",
                    reference.key,
                    reference.plugin,
                    reference.path.display()
                )
            })?;
            let plugin =
                component::load(&runtime, reference, &bytes, &metrics).map_err(|refusal| {
                    anyhow::anyhow!(
                        "{}: loading plugin {} ({}): {refusal}",
                        reference.key,
                        reference.plugin,
                        reference.path.display()
                    )
                })?;
            metrics.plugin_component(
                &reference.plugin,
                &reference.resource_name,
                reference.slot.key(),
                plugin.digest(),
                None,
            );
            match files.iter_mut().find(|f| f.path == reference.path) {
                Some(file) => file.references.push(i),
                None => files.push(Watched {
                    path: reference.path.clone(),
                    tracker: Tracker::new(plugin.digest()),
                    references: vec![i],
                }),
            }
            running.push(plugin);
        }
        // Said once every plugin loaded: a start-up that fails on a plugin is one line.
        for (reference, plugin) in references.iter().zip(&running) {
            tracing::info!(key = %reference.key, plugin = %reference.plugin, digest = %plugin.digest(), contract = plugin.contract_version(), "plugin loaded");
        }
        let mut chains = BTreeMap::new();
        for resource in references.iter().map(|r| r.resource) {
            if chains.contains_key(&resource) {
                continue;
            }
            let chain = chain_of(&references, &running, resource)?;
            chains.insert(resource, Arc::new(LiveChain::new(chain)));
        }
        Ok(Self {
            runtime,
            metrics,
            references,
            running,
            files,
            chains,
        })
    }

    /// The chain of the resource at index `resource` of `resources:`.
    pub fn chain(&self, resource: usize) -> Option<Arc<LiveChain>> {
        self.chains.get(&resource).cloned()
    }

    /// Polls every file `interval` apart on a thread of its own, until the process ends.
    pub fn watch(mut self, interval: Duration) -> std::io::Result<()> {
        tracing::info!(files = self.files.len(), interval = ?interval, "watching plugin files for hot reload");
        std::thread::Builder::new()
            .name("ferry-plugin-reload".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    self.poll();
                }
            })
            .map(drop)
    }

    /// Reads every file once and acts on what changed; returns what was tried.
    pub fn poll(&mut self) -> Vec<Reloaded> {
        let mut outcomes = Vec::new();
        for f in 0..self.files.len() {
            let path = self.files[f].path.clone();
            let (seen, bytes) = match std::fs::read(&path) {
                Ok(bytes) => (Seen::Digest(sha256_hex(&bytes)), bytes),
                Err(e) => (Seen::Unreadable(e.to_string()), Vec::new()),
            };
            let running = self.files[f].tracker.running().to_string();
            match self.files[f].tracker.observe(seen) {
                Step::Wait => {}
                Step::Unreadable(why) => {
                    tracing::warn!(path = %path.display(), running = %running, error = %why, "cannot read a plugin file; the running component stays");
                }
                Step::Restored => {
                    tracing::info!(path = %path.display(), digest = %running, "plugin file is back to the running component");
                }
                Step::Try(digest) => {
                    let loaded = self.try_swap(f, &digest, &bytes);
                    self.files[f].tracker.tried(&digest, loaded);
                    outcomes.push(if loaded {
                        Reloaded::Loaded(digest)
                    } else {
                        Reloaded::Refused(digest)
                    });
                }
            }
        }
        outcomes
    }

    /// Loads `bytes` for every reference of file `f` and swaps them in together, or refuses
    /// them all. Returns whether they run now.
    fn try_swap(&mut self, f: usize, digest: &str, bytes: &[u8]) -> bool {
        let indexes = self.files[f].references.clone();
        let path = self.files[f].path.display().to_string();
        let mut fresh = Vec::new();
        for &i in &indexes {
            let reference = &self.references[i];
            let checked = component::load(&self.runtime, reference, bytes, &self.metrics)
                .and_then(|new| keeps_hook(&self.running[i], &new, reference.slot).map(|()| new));
            match checked {
                Ok(plugin) => fresh.push((i, plugin)),
                Err(refusal) => {
                    let old = self.running[i].digest().to_string();
                    tracing::warn!(
                        key = %reference.key, plugin = %reference.plugin, path = %path,
                        digest = %digest, running = %old, outcome = refusal.outcome,
                        error = %refusal.reason,
                        "plugin reload refused; the running component stays"
                    );
                    for &j in &indexes {
                        self.metrics.plugin_reload(
                            &self.references[j].plugin,
                            digest,
                            refusal.outcome,
                        );
                    }
                    self.forget_unused(digest);
                    return false;
                }
            }
        }
        let mut resources = Vec::new();
        let mut replaced = Vec::new();
        for (i, plugin) in fresh {
            let reference = &self.references[i];
            let old = std::mem::replace(&mut self.running[i], plugin);
            self.metrics.plugin_component(
                &reference.plugin,
                &reference.resource_name,
                reference.slot.key(),
                digest,
                Some(old.digest()),
            );
            self.metrics
                .plugin_reload(&reference.plugin, digest, "loaded");
            tracing::info!(key = %reference.key, plugin = %reference.plugin, path = %path, digest = %digest, previous = %old.digest(), "plugin reloaded");
            replaced.push(old.digest().to_string());
            if !resources.contains(&reference.resource) {
                resources.push(reference.resource);
            }
        }
        for resource in resources {
            match (
                chain_of(&self.references, &self.running, resource),
                self.chains.get(&resource),
            ) {
                (Ok(chain), Some(live)) => {
                    let version = live.swap(chain);
                    tracing::info!(resource = %self.references.iter().find(|r| r.resource == resource).map_or("", |r| r.resource_name.as_str()), version, "plugin chain swapped");
                }
                // Every resource has a transform reference: not reached.
                (Err(e), _) => tracing::error!(error = %e, "cannot rebuild a plugin chain"),
                (_, None) => {}
            }
        }
        for old in replaced {
            self.forget_unused(&old);
        }
        true
    }

    /// Drops the compiled code of `digest` unless a reference still runs it.
    fn forget_unused(&self, digest: &str) {
        if !self.running.iter().any(|p| p.digest() == digest) {
            self.runtime.forget_compiled(digest);
        }
    }
}

/// A reload must not take away the hook its slot is called for: a component that does not
/// export it would fail every object (`hook-not-exported`) where the running one answered.
fn keeps_hook(running: &Plugin, new: &Plugin, slot: Slot) -> Result<(), Refusal> {
    let hook = slot.hook();
    if running.exports(hook) && !new.exports(hook) {
        return Err(Refusal {
            outcome: "missing-hook",
            reason: format!(
                "the new component does not export `{}`, which it is configured for as {}",
                hook.wit_name(),
                slot.key()
            ),
        });
    }
    Ok(())
}

/// The chain of resource `resource` from the running plugins.
fn chain_of(
    references: &[Reference],
    running: &[Plugin],
    resource: usize,
) -> anyhow::Result<WasmChain> {
    let plugin = |slot: Slot| {
        references
            .iter()
            .zip(running)
            .find(|(r, _)| r.resource == resource && r.slot == slot)
            .map(|(_, p)| p.clone())
    };
    Ok(WasmChain {
        placement: plugin(Slot::Placement),
        transform: plugin(Slot::Transform)
            .ok_or_else(|| anyhow::anyhow!("resources[{resource}] has no transform plugin"))?,
        status: plugin(Slot::Status),
        dependencies: plugin(Slot::Dependencies),
    })
}

/// Hex SHA-256 of a component file: the same digest the runtime reports for it.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
