//! A plugin chain that remembers the calls made for one object: what `ferry plugin record`
//! puts around a resource's chain while the engine's own planner plans that object, so the
//! recorded inputs are exactly what the engine passes its plugins, and the outputs what they
//! answer today.

use std::sync::{Arc, Mutex};

use ferry_core::{Downstream, ObjectContext, ObjectRef, Target};
use ferry_sync::{HookError, PluginChain, Transformed};
use serde_json::Value;

/// One hook call for the recorded object.
#[derive(Clone, Debug)]
pub enum Call {
    /// `place`.
    Place {
        /// The context.
        context: ObjectContext,
        /// The upstream object.
        object: Value,
        /// Every target.
        targets: Vec<Target>,
        /// The answer.
        result: Result<Vec<String>, HookError>,
    },
    /// `transform`, one result per placed target.
    Transform {
        /// The context.
        context: ObjectContext,
        /// The upstream object.
        object: Value,
        /// The placed targets, each with its result.
        results: Vec<(Target, Result<Option<Value>, HookError>)>,
    },
    /// `aggregate-status`.
    Status {
        /// The context.
        context: ObjectContext,
        /// The upstream object.
        object: Value,
        /// The copies.
        downstream: Vec<Downstream>,
        /// The answer.
        result: Result<Option<Value>, HookError>,
    },
    /// `dependencies`.
    Dependencies {
        /// The context.
        context: ObjectContext,
        /// The upstream object.
        object: Value,
        /// The answer.
        result: Result<Vec<ObjectRef>, HookError>,
    },
}

impl Call {
    fn slot(&self) -> &'static str {
        match self {
            Call::Place { .. } => "place",
            Call::Transform { .. } => "transform",
            Call::Status { .. } => "status",
            Call::Dependencies { .. } => "dependencies",
        }
    }
}

/// `inner`, remembering the first call of each hook for the object `namespace/name` of
/// logical cluster `cluster`.
pub struct RecordingChain {
    inner: Arc<dyn PluginChain>,
    cluster: String,
    namespace: String,
    name: String,
    calls: Mutex<Vec<Call>>,
}

impl RecordingChain {
    /// Records the calls `inner` answers for one object.
    pub fn new(inner: Arc<dyn PluginChain>, cluster: &str, namespace: &str, name: &str) -> Self {
        Self {
            inner,
            cluster: cluster.into(),
            namespace: namespace.into(),
            name: name.into(),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The calls recorded, at most one per hook, in the order they were made.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn is_recorded(&self, context: &ObjectContext, object: &Value) -> bool {
        context.logical_cluster == self.cluster
            && context.namespace == self.namespace
            && object.pointer("/metadata/name").and_then(Value::as_str) == Some(&self.name)
    }

    fn remember(&self, call: Call) {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !calls.iter().any(|c| c.slot() == call.slot()) {
            calls.push(call);
        }
    }
}

impl PluginChain for RecordingChain {
    fn place(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, HookError> {
        let result = self.inner.place(context, object, targets);
        if self.is_recorded(context, object) {
            self.remember(Call::Place {
                context: context.clone(),
                object: object.clone(),
                targets: targets.to_vec(),
                result: result.clone(),
            });
        }
        result
    }

    fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, HookError> {
        let result = self
            .transform_all(context, object, std::slice::from_ref(target))
            .pop()
            .unwrap_or(Ok(None));
        Ok(result?.map(Arc::unwrap_or_clone))
    }

    fn transform_all(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Vec<Transformed> {
        let results = self.inner.transform_all(context, object, targets);
        if self.is_recorded(context, object) {
            self.remember(Call::Transform {
                context: context.clone(),
                object: object.clone(),
                results: targets
                    .iter()
                    .cloned()
                    .zip(
                        results.iter().map(|result| {
                            result.clone().map(|copy| copy.map(Arc::unwrap_or_clone))
                        }),
                    )
                    .collect(),
            });
        }
        results
    }

    fn aggregate_status(
        &self,
        context: &ObjectContext,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, HookError> {
        let result = self.inner.aggregate_status(context, object, downstream);
        if self.is_recorded(context, object) {
            self.remember(Call::Status {
                context: context.clone(),
                object: object.clone(),
                downstream: downstream.to_vec(),
                result: result.clone(),
            });
        }
        result
    }

    fn dependencies(
        &self,
        context: &ObjectContext,
        object: &Value,
    ) -> Result<Vec<ObjectRef>, HookError> {
        let result = self.inner.dependencies(context, object);
        if self.is_recorded(context, object) {
            self.remember(Call::Dependencies {
                context: context.clone(),
                object: object.clone(),
                result: result.clone(),
            });
        }
        result
    }

    fn version(&self) -> u64 {
        self.inner.version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Places everywhere, copies the object, no status.
    struct Everywhere;

    impl PluginChain for Everywhere {
        fn place(
            &self,
            _: &ObjectContext,
            _: &Value,
            targets: &[Target],
        ) -> Result<Vec<String>, HookError> {
            Ok(targets.iter().map(|t| t.name.clone()).collect())
        }
        fn transform(
            &self,
            _: &ObjectContext,
            object: &Value,
            _: &Target,
        ) -> Result<Option<Value>, HookError> {
            Ok(Some(object.clone()))
        }
        fn aggregate_status(
            &self,
            _: &ObjectContext,
            _: &Value,
            _: &[Downstream],
        ) -> Result<Option<Value>, HookError> {
            Ok(None)
        }
    }

    fn context(cluster: &str) -> ObjectContext {
        ObjectContext {
            logical_cluster: cluster.into(),
            namespace: "demo".into(),
            downstream_namespace: "ferry-x".into(),
            ..ObjectContext::default()
        }
    }

    #[test]
    fn only_the_recorded_objects_calls_are_kept_the_first_of_each_hook() {
        let recorder = RecordingChain::new(Arc::new(Everywhere), "abc", "demo", "web");
        let web = json!({"metadata": {"name": "web", "namespace": "demo"}});
        let api = json!({"metadata": {"name": "api", "namespace": "demo"}});
        let targets = [Target::new("c1"), Target::new("c2")];
        // Another object, and the same name in another workspace: not recorded.
        recorder
            .place(&context("abc"), &api, &targets)
            .expect("place");
        recorder
            .place(&context("xyz"), &web, &targets)
            .expect("place");
        assert!(recorder.calls().is_empty());

        let placed = recorder.place(&context("abc"), &web, &targets);
        assert_eq!(placed, Ok(vec!["c1".to_string(), "c2".to_string()]));
        recorder
            .place(&context("abc"), &web, &targets[..1])
            .expect("place");
        let results = recorder.transform_all(&context("abc"), &web, &targets);
        assert_eq!(
            results.len(),
            2,
            "the engine gets the inner chain's answers"
        );

        let calls = recorder.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let Call::Place {
            targets: seen,
            result,
            ..
        } = &calls[0]
        else {
            panic!("{calls:?}");
        };
        assert_eq!(seen.len(), 2, "the first place call is kept");
        assert_eq!(result.as_ref().map(Vec::len), Ok(2));
        let Call::Transform { results, .. } = &calls[1] else {
            panic!("{calls:?}");
        };
        assert_eq!(results.len(), 2, "one result per placed target");
    }
}
