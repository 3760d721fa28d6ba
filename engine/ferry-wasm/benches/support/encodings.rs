//! Four ways for an object to cross the boundary, measured on the same transformation
//! (`tests/plugins/encoding-probe`, `default-transform`'s logic): JSON text (contract
//! v0.2.0), MessagePack, CBOR, and the object as a host resource the guest reads fields from,
//! answered with edits the host applies to its own copy. Each row is the engine's whole
//! transform step for one object on 3 targets: encode, a fresh instance, the call, decode,
//! the output checks of `ferry_core::validate` and one object per target.
//!
//! The probe calls the component through wasmtime directly (its WIT is the fixture's, not
//! Ferry's contract), on the runtime's engine and instance pool, with the same fresh store
//! per call; it skips `configure` (the fixture has none), which the engine row pays.

use std::sync::Arc;

use ferry_core::{ObjectContext, TransformPolicy, validate};
use serde_json::{Map, Value};
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        world: "probe",
        path: "../../tests/plugins/encoding-probe/wit",
        with: { "ferry:encoding-probe/object-view.object": super::ObjectView },
    });
}

use bindings::ferry::encoding_probe::object_view::{Host, HostObject};
use bindings::ferry::encoding_probe::types::{Edit, Origin};
use bindings::{Probe, ProbePre};

/// The upstream object behind the `object` resource. The engine owns the object it plans
/// with, so handing it to the resource is a move, not a copy (here: an `Arc` made once).
pub struct ObjectView(Arc<Value>);

/// Store data of one probe call.
pub struct State {
    table: ResourceTable,
}

impl Host for State {}

impl bindings::ferry::encoding_probe::types::Host for State {}

impl HostObject for State {
    fn get_string(&mut self, object: Resource<ObjectView>, pointer: String) -> Option<String> {
        let view = self.table.get(&object).ok()?;
        view.0.pointer(&pointer)?.as_str().map(str::to_owned)
    }

    fn keys(&mut self, object: Resource<ObjectView>, pointer: String) -> Vec<String> {
        match self
            .table
            .get(&object)
            .ok()
            .and_then(|v| v.0.pointer(&pointer))
        {
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    fn drop(&mut self, object: Resource<ObjectView>) -> wasmtime::Result<()> {
        self.table.delete(object)?;
        Ok(())
    }
}

/// The probe component, linked once; every call instantiates it afresh.
pub struct Encodings {
    pre: ProbePre<State>,
    engine: wasmtime::Engine,
    origin: Origin,
    context: ObjectContext,
    policy: TransformPolicy,
}

/// One encoding's whole transform step: the objects for `targets` targets.
pub type Step = fn(&Encodings, &Value, &Arc<Value>, usize) -> Vec<Value>;

impl Encodings {
    pub fn load(engine: &wasmtime::Engine, bytes: &[u8], context: &ObjectContext) -> Self {
        let component = Component::new(engine, bytes).unwrap();
        let mut linker: Linker<State> = Linker::new(engine);
        Probe::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).unwrap();
        let pre = ProbePre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self {
            pre,
            engine: engine.clone(),
            origin: Origin {
                logical_cluster: context.logical_cluster.clone(),
                workspace_path: context.workspace_path.clone(),
                downstream_namespace: context.downstream_namespace.clone(),
            },
            context: context.clone(),
            policy: TransformPolicy::default(),
        }
    }

    fn instance(&self) -> (Store<State>, Probe) {
        let mut store = Store::new(
            &self.engine,
            State {
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let probe = self.pre.instantiate(&mut store).unwrap();
        (store, probe)
    }

    /// The checks every transform output passes, and one object per further target.
    fn finish(&self, out: Value, upstream: &Value, targets: usize) -> Vec<Value> {
        let out = validate::transform_object(out, upstream, &self.context, &self.policy).unwrap();
        let mut all = Vec::with_capacity(targets);
        for _ in 1..targets {
            all.push(out.clone());
        }
        all.push(out);
        all
    }

    pub fn json(&self, object: &Value, _: &Arc<Value>, targets: usize) -> Vec<Value> {
        let text = serde_json::to_string(object).unwrap();
        let (mut store, probe) = self.instance();
        let out = probe
            .call_transform_json(&mut store, &self.origin, &text)
            .unwrap()
            .unwrap();
        // The engine's path: parse and check the text in one step.
        let out = validate::transform(&out, object, &self.context, &self.policy).unwrap();
        self.finish(out, object, targets)
    }

    pub fn msgpack(&self, object: &Value, _: &Arc<Value>, targets: usize) -> Vec<Value> {
        let bytes = rmp_serde::to_vec(object).unwrap();
        let (mut store, probe) = self.instance();
        let out = probe
            .call_transform_msgpack(&mut store, &self.origin, &bytes)
            .unwrap()
            .unwrap();
        self.finish(rmp_serde::from_slice(&out).unwrap(), object, targets)
    }

    pub fn cbor(&self, object: &Value, _: &Arc<Value>, targets: usize) -> Vec<Value> {
        let mut bytes = Vec::with_capacity(4096);
        ciborium::into_writer(object, &mut bytes).unwrap();
        let (mut store, probe) = self.instance();
        let out = probe
            .call_transform_cbor(&mut store, &self.origin, &bytes)
            .unwrap()
            .unwrap();
        self.finish(
            ciborium::from_reader(out.as_slice()).unwrap(),
            object,
            targets,
        )
    }

    pub fn resource(&self, object: &Value, shared: &Arc<Value>, targets: usize) -> Vec<Value> {
        let (mut store, probe) = self.instance();
        let handle = store
            .data_mut()
            .table
            .push(ObjectView(Arc::clone(shared)))
            .unwrap();
        let borrowed = Resource::new_borrow(handle.rep());
        let edits = probe
            .call_transform_patch(&mut store, &self.origin, borrowed)
            .unwrap()
            .unwrap();
        store.data_mut().table.delete(handle).unwrap();
        let edits = Edits::parse(edits);
        // Each target's object is the host's own copy with the edits applied, as native
        // Rust clones the object per target.
        (0..targets)
            .map(|_| {
                let mut copy = object.clone();
                edits.apply(&mut copy);
                validate::transform_object(copy, object, &self.context, &self.policy).unwrap()
            })
            .collect()
    }
}

/// A guest's edits, parsed once for every target.
struct Edits(Vec<(Vec<String>, Option<Value>)>);

impl Edits {
    fn parse(edits: Vec<Edit>) -> Self {
        Self(
            edits
                .into_iter()
                .map(|edit| match edit {
                    Edit::Remove(pointer) => (tokens(&pointer), None),
                    Edit::Set((pointer, json)) => {
                        (tokens(&pointer), Some(serde_json::from_str(&json).unwrap()))
                    }
                })
                .collect(),
        )
    }

    fn apply(&self, object: &mut Value) {
        for (path, value) in &self.0 {
            let Some((last, parents)) = path.split_last() else {
                continue;
            };
            match value {
                None => {
                    let parent = parents.iter().try_fold(&mut *object, |v, k| v.get_mut(k));
                    if let Some(Value::Object(map)) = parent {
                        map.remove(last);
                    }
                }
                Some(value) => {
                    let mut at = &mut *object;
                    for key in parents {
                        if !at.is_object() {
                            *at = Value::Object(Map::new());
                        }
                        at = at
                            .as_object_mut()
                            .map(|m| m.entry(key.clone()).or_insert(Value::Null))
                            .unwrap();
                    }
                    if !at.is_object() {
                        *at = Value::Object(Map::new());
                    }
                    if let Value::Object(map) = at {
                        map.insert(last.clone(), value.clone());
                    }
                }
            }
        }
    }
}

/// The reference tokens of an RFC 6901 JSON pointer.
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}
