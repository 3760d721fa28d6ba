//! A resource's plugin chain that hot reload can swap while the engine runs.
//!
//! Every hook call reads the chain once, and a swap replaces the whole [`WasmChain`] at once,
//! bumps the version and tells the engine, which then reconciles every object of the resource
//! with the new plugins. A reconcile that straddles a swap may take one hook's answer from the
//! old version and the next from the new; the reconcile of every object that follows the swap
//! settles each on the new version alone.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_core::{Downstream, ObjectContext, ObjectRef, Target};
use ferry_sync::{HookError, PluginChain, Transformed};
use serde_json::Value;
use tokio::sync::watch;

use crate::chain::WasmChain;

/// The chain the engine calls, swappable.
pub struct LiveChain {
    current: ArcSwap<WasmChain>,
    /// The version (how many swaps so far); the engine subscribes to it.
    version: watch::Sender<u64>,
}

impl LiveChain {
    /// A chain that starts with `chain` as version 0.
    pub fn new(chain: WasmChain) -> Self {
        Self {
            current: ArcSwap::from_pointee(chain),
            version: watch::Sender::new(0),
        }
    }

    /// The chain that answers now.
    #[cfg(test)]
    pub fn current(&self) -> Arc<WasmChain> {
        self.current.load_full()
    }

    /// Makes `chain` answer every call from now on and tells the engine; returns the new
    /// version.
    pub fn swap(&self, chain: WasmChain) -> u64 {
        self.current.store(Arc::new(chain));
        let mut version = 0;
        self.version.send_modify(|v| {
            *v += 1;
            version = *v;
        });
        version
    }
}

impl PluginChain for LiveChain {
    fn place(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, HookError> {
        self.current.load().place(context, object, targets)
    }

    fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, HookError> {
        self.current.load().transform(context, object, target)
    }

    fn transform_all(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Vec<Transformed> {
        self.current.load().transform_all(context, object, targets)
    }

    fn aggregate_status(
        &self,
        context: &ObjectContext,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, HookError> {
        self.current
            .load()
            .aggregate_status(context, object, downstream)
    }

    fn dependencies(
        &self,
        context: &ObjectContext,
        object: &Value,
    ) -> Result<Vec<ObjectRef>, HookError> {
        self.current.load().dependencies(context, object)
    }

    fn version(&self) -> u64 {
        *self.version.borrow()
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.version.subscribe())
    }
}
