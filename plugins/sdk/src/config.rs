//! The plugin's parsed configuration, kept between `configure` and the hook call, and the
//! JSON text helpers every hook adapter uses. Shared by both contract versions.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

// The host calls `configure` and then one hook on the same fresh instance, so the parsed
// configuration lives in instance memory between the two calls. Wasm guests are
// single-threaded: a thread-local is the whole state.
thread_local! {
    static CONFIG: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

/// Parses, validates and stores the configuration (`json` is `null` when none was given).
pub(crate) fn configure<C: DeserializeOwned + 'static>(
    json: &str,
    validate: impl FnOnce(&C) -> Result<(), Error>,
) -> Result<(), Error> {
    let config: C = serde_json::from_str(json)
        .map_err(|e| Error::invalid_config(format!("cannot read configuration: {e}")))?;
    validate(&config)?;
    CONFIG.with(|c| *c.borrow_mut() = Some(Rc::new(config)));
    Ok(())
}

/// Runs `f` with the stored configuration. A host that skipped `configure` still gets the
/// plugin's behaviour for "no config" (`validate` runs on `null`).
pub(crate) fn with_config<C: DeserializeOwned + 'static, R>(
    validate: impl FnOnce(&C) -> Result<(), Error>,
    f: impl FnOnce(&C) -> Result<R, Error>,
) -> Result<R, Error> {
    if CONFIG.with(|c| c.borrow().is_none()) {
        configure::<C>("null", validate)?;
    }
    let any = CONFIG
        .with(|c| c.borrow().clone())
        .ok_or_else(|| Error::failed("configuration was not stored"))?;
    let config = any
        .downcast_ref::<C>()
        .ok_or_else(|| Error::failed("stored configuration has another type"))?;
    f(config)
}

/// Parses an object the host sent.
pub(crate) fn parse(object: &str) -> Result<Value, Error> {
    serde_json::from_str(object)
        .map_err(|e| Error::invalid_input(format!("object is not valid JSON: {e}")))
}

/// Renders an object for the host.
pub(crate) fn render(value: &Value) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::failed(format!("cannot write JSON: {e}")))
}

/// Configuration of a plugin that takes none: accepts `null` and `{}`, refuses anything else
/// so that an operator's misplaced setting is reported instead of ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConfig;

impl<'de> serde::Deserialize<'de> for NoConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Option::<serde_json::Map<String, Value>>::deserialize(deserializer)?;
        match value {
            Some(map) if !map.is_empty() => Err(serde::de::Error::custom(
                "this plugin takes no configuration",
            )),
            _ => Ok(NoConfig),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_config_accepts_null_and_an_empty_map_and_refuses_settings() {
        assert!(serde_json::from_str::<NoConfig>("null").is_ok());
        assert!(serde_json::from_str::<NoConfig>("{}").is_ok());
        let err = serde_json::from_str::<NoConfig>(r#"{"target": "x"}"#).expect_err("refused");
        assert!(err.to_string().contains("takes no configuration"), "{err}");
    }

    #[test]
    fn a_hook_called_without_configure_sees_the_configuration_for_null() {
        let seen = with_config::<Option<u32>, _>(|_| Ok(()), |c| Ok(*c)).expect("configured");
        assert_eq!(seen, None);
    }
}
