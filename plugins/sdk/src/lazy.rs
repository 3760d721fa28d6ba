//! [`LazyObject`]: a JSON object whose top-level members stay unparsed text until a plugin
//! asks for them, written back verbatim when it does not.
//!
//! A plugin that edits only `metadata` of a 4 KB Deployment would otherwise build a `Value`
//! tree of the whole object (tens of allocations per container) and write all of it out
//! again. Here only the members it reads or edits are parsed; `spec` crosses as the very
//! text the host sent. (`cargo xtask bench plugins` measures both ways, docs/plugins.md
//! "Boundary cost".)
//!
//! This file depends on `serde` and `serde_json` (feature `raw_value`) only, so that the
//! benchmark can compile it natively beside the plugin logic it measures.

use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON object parsed one level deep: each top-level member is kept as the JSON text it
/// was received as (borrowed from the input) until it is read, replaced or removed.
///
/// - [`LazyObject::get`] parses one member into any type (e.g. `String` for `kind`) and
///   keeps the text; [`LazyObject::take`] removes a member and returns it parsed, to be
///   edited and put back with [`LazyObject::insert`].
/// - [`LazyObject::to_json`] writes the object: untouched members exactly as received,
///   edited ones serialised, in the order received (inserted ones last).
/// - A key given twice keeps its last value, as `serde_json::Value` does.
///
/// The text of an untouched member is not re-validated on the way out: it was checked when
/// the object was parsed (a malformed member fails [`LazyObject::parse`]), and the host
/// validates every answer anyway.
#[derive(Debug, Clone)]
pub struct LazyObject<'a> {
    members: Vec<(String, Member<'a>)>,
}

#[derive(Debug, Clone)]
enum Member<'a> {
    /// As received.
    Raw(&'a RawValue),
    /// Replaced by the plugin.
    Edited(Value),
}

impl<'a> LazyObject<'a> {
    /// Reads the top level of `json`, which must be a JSON object. The members' text is
    /// scanned (and so checked to be JSON) but not turned into values.
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Whether the object has member `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// The member names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_str())
    }

    /// Member `key` parsed as a `T` (the member stays as it is), or `None` if there is no
    /// such member. Fails if the member is not a `T`: use `Value` (or `Option<T>`) to accept
    /// anything.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, serde_json::Error> {
        match self.position(key).map(|at| &self.members[at].1) {
            None => Ok(None),
            Some(Member::Raw(raw)) => serde_json::from_str(raw.get()).map(Some),
            Some(Member::Edited(value)) => T::deserialize(value).map(Some),
        }
    }

    /// The JSON text of member `key` as received, if it is there and was not replaced.
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        match self.position(key).map(|at| &self.members[at].1) {
            Some(Member::Raw(raw)) => Some(raw.get()),
            _ => None,
        }
    }

    /// Removes member `key` and returns it parsed, or `None` if there is none. Put an edited
    /// value back with [`LazyObject::insert`] (it keeps no place of its own meanwhile: a
    /// member taken and inserted again is written last).
    pub fn take(&mut self, key: &str) -> Result<Option<Value>, serde_json::Error> {
        let Some(at) = self.position(key) else {
            return Ok(None);
        };
        match self.members.remove(at).1 {
            Member::Raw(raw) => serde_json::from_str(raw.get()).map(Some),
            Member::Edited(value) => Ok(Some(value)),
        }
    }

    /// Sets member `key` to `value`, in the place of an existing one or else last.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.position(&key) {
            Some(at) => self.members[at].1 = Member::Edited(value),
            None => self.members.push((key, Member::Edited(value))),
        }
    }

    /// Removes member `key` without parsing it; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.position(key) {
            Some(at) => {
                self.members.remove(at);
                true
            }
            None => false,
        }
    }

    /// The object as JSON text: untouched members verbatim, edited ones serialised.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The whole object parsed, for code that needs a `Value` after all.
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        let mut map = serde_json::Map::new();
        for (key, member) in self.members {
            let value = match member {
                Member::Raw(raw) => serde_json::from_str(raw.get())?,
                Member::Edited(value) => value,
            };
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.members.iter().position(|(k, _)| k == key)
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for LazyObject<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Members<'a> {
            type Value = LazyObject<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut object = LazyObject {
                    members: Vec::with_capacity(map.size_hint().unwrap_or(8)),
                };
                while let Some((key, raw)) = map.next_entry::<String, &'a RawValue>()? {
                    match object.position(&key) {
                        Some(at) => object.members[at].1 = Member::Raw(raw),
                        None => object.members.push((key, Member::Raw(raw))),
                    }
                }
                Ok(object)
            }
        }

        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

impl Serialize for LazyObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.members.len()))?;
        for (key, member) in &self.members {
            match member {
                Member::Raw(raw) => map.serialize_entry(key, raw)?,
                Member::Edited(value) => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEPLOYMENT: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"web","uid":"u-1"},
        "spec":{"replicas" : 2,  "template":{"spec":{"containers":[{"name":"a","image":"i\u00e9"}]}}},
        "status":{"readyReplicas":2}}"#;

    #[test]
    fn untouched_members_are_written_back_exactly_as_received() {
        let object = LazyObject::parse(DEPLOYMENT).expect("an object");
        let written = object.to_json().expect("written");
        // Spacing and escapes inside `spec` survive: the member was never parsed.
        assert!(
            written.contains(r#""spec":{"replicas" : 2,  "template""#),
            "{written}"
        );
        assert!(written.contains(r#""image":"i\u00e9""#), "{written}");
        let reparsed: Value = serde_json::from_str(&written).expect("valid JSON");
        assert_eq!(
            reparsed,
            serde_json::from_str::<Value>(DEPLOYMENT).expect("JSON")
        );
    }

    #[test]
    fn an_edited_member_is_written_in_place_and_removed_ones_are_gone() {
        let mut object = LazyObject::parse(DEPLOYMENT).expect("an object");
        let mut metadata = object.take("metadata").expect("parsed").expect("present");
        metadata["namespace"] = json!("ferry-1");
        object.insert("metadata", metadata);
        assert!(object.remove("status"));
        assert!(!object.remove("status"), "removed once");
        object.insert("kind", json!("Deployment"));
        let keys: Vec<&str> = object.keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "spec", "metadata"]);
        let written: Value =
            serde_json::from_str(&object.to_json().expect("written")).expect("valid JSON");
        let mut expected: Value = serde_json::from_str(DEPLOYMENT).expect("JSON");
        expected["metadata"]["namespace"] = json!("ferry-1");
        expected.as_object_mut().expect("object").remove("status");
        assert_eq!(written, expected);
    }

    #[test]
    fn members_are_read_as_any_type_without_being_consumed() {
        let object = LazyObject::parse(DEPLOYMENT).expect("an object");
        assert_eq!(
            object.get::<String>("kind").expect("a string").as_deref(),
            Some("Deployment")
        );
        assert_eq!(object.get::<String>("missing").expect("absent"), None);
        assert!(object.get::<String>("spec").is_err(), "spec is no string");
        assert_eq!(
            object.get::<Value>("status").expect("any value"),
            Some(json!({"readyReplicas": 2}))
        );
        assert_eq!(object.raw("kind"), Some(r#""Deployment""#));
        assert!(object.contains_key("spec"));
        assert_eq!(
            object.into_value().expect("whole"),
            serde_json::from_str::<Value>(DEPLOYMENT).expect("JSON")
        );
    }

    #[test]
    fn an_edited_member_is_read_from_its_new_value() {
        let mut object = LazyObject::parse(DEPLOYMENT).expect("an object");
        object.insert("kind", json!("StatefulSet"));
        assert_eq!(object.raw("kind"), None, "no longer as received");
        assert_eq!(
            object.get::<String>("kind").expect("a string").as_deref(),
            Some("StatefulSet")
        );
    }

    #[test]
    fn only_a_json_object_with_valid_members_is_accepted() {
        let err = LazyObject::parse("[1, 2]").expect_err("not an object");
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        assert!(
            LazyObject::parse(r#"{"spec": {"a": }}"#).is_err(),
            "bad member"
        );
        assert!(
            LazyObject::parse(r#"{"a": 1} trailing"#).is_err(),
            "trailing text"
        );
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_like_value_does() {
        let text = r#"{"a": 1, "b": 2, "a": 3}"#;
        let object = LazyObject::parse(text).expect("an object");
        assert_eq!(object.get::<u32>("a").expect("a number"), Some(3));
        assert_eq!(
            object.into_value().expect("whole"),
            serde_json::from_str::<Value>(text).expect("JSON")
        );
    }
}
