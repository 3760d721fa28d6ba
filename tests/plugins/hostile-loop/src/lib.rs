//! Spins forever in `place` and `transform`; `aggregate-status` answers at once so a test can
//! show the same plugin still serves calls after a timeout.

use ferry_plugin_sdk::v0_1::{Context, Downstream, Error, NoConfig, Plugin, Target, Value, export};

struct Loop;

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from reasoning about the loop.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl Plugin for Loop {
    type Config = NoConfig;

    fn place(_: &NoConfig, _: &Context, _: &Value, _: &[Target]) -> Result<Vec<String>, Error> {
        spin()
    }

    fn transform(_: &NoConfig, _: &Context, _: Value, _: &Target) -> Result<Option<Value>, Error> {
        spin()
    }

    fn aggregate_status(
        _: &NoConfig,
        _: &Context,
        _: &Value,
        _: &[Downstream],
    ) -> Result<Option<Value>, Error> {
        Ok(Some(ferry_plugin_sdk::json!({"alive": true})))
    }
}

export!(Loop);
