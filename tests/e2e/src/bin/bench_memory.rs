//! `bench-memory`: Ferry's resident memory at rest by object count (see
//! `ferry_e2e::bench::memory`), then `memory.json` and `memory.md`.
//!
//! `cargo xtask bench memory` builds Ferry and this in release mode, brings the environment up
//! and runs this with `FERRY_BIN`, `FERRY_PLUGIN_DIR` and the flags below.
//!
//! Flags: `--sizes 0,2000,10000` `--workspaces W` `--rest-seconds S` `--settle-seconds S`
//! `--no-restart` `--variant NAME=FERRY_BINARY` (repeatable) `--target-settings KEYS` `--engine-settings KEYS` `--out DIR` `--note TEXT`
//! (repeatable).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ferry_e2e::Env;
use ferry_e2e::bench::memory::{self, MemoryPlan};
use ferry_e2e::bench::report::{self, Machine};
use serde_json::json;

struct Args {
    plan: MemoryPlan,
    out: PathBuf,
    notes: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        plan: MemoryPlan {
            sizes: vec![0, 2000, 10000],
            workspaces: 10,
            rest_seconds: 20,
            settle_seconds: 15,
            restart: true,
            variants: Vec::new(),
            target_settings: "writesPerSecond: 1000, maxInFlight: 64".into(),
            engine_settings: "workers: 32".into(),
        },
        out: PathBuf::from("target/bench"),
        notes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-restart" {
            args.plan.restart = false;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> Result<u64> {
            v.trim()
                .parse()
                .with_context(|| format!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--sizes" => {
                args.plan.sizes = value
                    .split(',')
                    .map(|v| number(v).map(|n| n as usize))
                    .collect::<Result<_>>()?
            }
            "--workspaces" => args.plan.workspaces = number(&value)? as usize,
            "--rest-seconds" => args.plan.rest_seconds = number(&value)?,
            "--settle-seconds" => args.plan.settle_seconds = number(&value)?,
            "--variant" => {
                let (name, binary) = value
                    .split_once('=')
                    .with_context(|| format!("--variant {value:?}: expected NAME=PATH"))?;
                args.plan
                    .variants
                    .push((name.to_string(), PathBuf::from(binary)));
            }
            "--target-settings" => args.plan.target_settings = value,
            "--engine-settings" => args.plan.engine_settings = value,
            "--out" => args.out = PathBuf::from(value),
            "--note" => args.notes.push(value),
            other => bail!("unknown flag {other} (see the comment at the top of bench_memory.rs)"),
        }
    }
    if args.plan.workspaces == 0 || args.plan.sizes.is_empty() {
        bail!("--workspaces must be positive and --sizes must name at least one size");
    }
    if args.plan.sizes.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--sizes must be ascending (objects are only ever added)");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_e2e::exit_code(bench().await)
}

async fn bench() -> Result<()> {
    let args = parse_args()?;
    let Some(env) = Env::get()? else {
        bail!("no environment (run `cargo xtask bench memory`)");
    };
    let load_start = report::load_average();
    let points = memory::run(&env, &args.plan).await?;
    let machine = Machine::describe(load_start, args.notes.clone());
    let table = memory::markdown(&points);
    let document = json!({ "plan": args.plan, "machine": machine, "points": points });
    report::write_outputs(&args.out, "memory", &document, &table, &machine)?;
    Ok(())
}
