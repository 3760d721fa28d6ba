//! `configure` works without WASI; `place` writes to stdout, reads the clock and draws a random
//! number, so every call of it reaches a denied WASI import.

wit_bindgen::generate!({
    world: "ferry-test:wasi-importer/wasi-importer",
    path: ["../../../wit/v0.1.0", "wit"],
    generate_all,
});

use exports::ferry::sync::{config, placement};
use ferry::sync::types::{ObjectContext, PluginError, Target};

struct WasiImporter;

impl config::Guest for WasiImporter {
    fn configure(_: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl placement::Guest for WasiImporter {
    fn place(
        _: ObjectContext,
        _: String,
        targets: Vec<Target>,
    ) -> Result<Vec<String>, PluginError> {
        let out = wasi::cli::stdout::get_stdout();
        out.blocking_write_and_flush(b"choosing at random\n")
            .map_err(PluginError::Failed)?;
        let now = wasi::clocks::wall_clock::now();
        let pick = (wasi::random::random::get_random_u64() ^ now.seconds) as usize;
        Ok(targets
            .get(pick % targets.len().max(1))
            .map(|t| vec![t.name.clone()])
            .unwrap_or_default())
    }
}

export!(WasiImporter);
