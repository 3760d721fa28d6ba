//! Allocates and touches 1 GiB in `transform`; `place` behaves.

use ferry_plugin_sdk::v0_1::{Context, Error, NoConfig, Plugin, Target, Value, export};

struct Bomb;

impl Plugin for Bomb {
    type Config = NoConfig;

    fn place(
        _: &NoConfig,
        _: &Context,
        _: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, Error> {
        Ok(targets.iter().map(|t| t.name.clone()).collect())
    }

    fn transform(_: &NoConfig, _: &Context, _: Value, _: &Target) -> Result<Option<Value>, Error> {
        let mut block = vec![1u8; 1 << 30];
        block[12345] = 7;
        let sum: u64 = std::hint::black_box(&block)
            .iter()
            .step_by(4096)
            .map(|b| u64::from(*b))
            .sum();
        Err(Error::failed(format!(
            "allocated 1 GiB (checksum {sum}): the memory cap did not hold"
        )))
    }
}

export!(Bomb);
