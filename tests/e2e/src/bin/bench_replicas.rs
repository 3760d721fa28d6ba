//! `bench-replicas`: cold convergence of N objects with 1, 2 and 3 replicas sharing the work
//! (see `ferry_e2e::bench::replicas`), then `replicas.json` and `replicas.md`.
//!
//! `cargo xtask bench replicas` builds Ferry and this in release mode, brings the two-shard
//! environment up and runs this with `FERRY_BIN`, `FERRY_PLUGIN_DIR` and the flags below.
//!
//! Flags: `--objects N` `--replicas 1,2,3` `--workspaces W` `--rest-seconds S` `--no-prime`
//! `--target-settings KEYS` `--engine-settings KEYS` `--out DIR` `--note TEXT` (repeatable).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ferry_e2e::Env;
use ferry_e2e::bench::replicas::{self, ReplicasPlan};
use ferry_e2e::bench::report::{self, Machine};
use serde_json::json;

struct Args {
    plan: ReplicasPlan,
    out: PathBuf,
    notes: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        plan: ReplicasPlan {
            objects: 10_000,
            replicas: vec![1, 2, 3],
            workspaces: 12,
            rest_seconds: 20,
            prime: true,
            target_settings: String::new(),
            engine_settings: String::new(),
        },
        out: PathBuf::from("target/bench"),
        notes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-prime" {
            args.plan.prime = false;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> Result<usize> {
            v.trim()
                .parse()
                .with_context(|| format!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--objects" => args.plan.objects = number(&value)?,
            "--replicas" => {
                args.plan.replicas = value.split(',').map(number).collect::<Result<_>>()?
            }
            "--workspaces" => args.plan.workspaces = number(&value)?,
            "--rest-seconds" => args.plan.rest_seconds = number(&value)? as u64,
            "--target-settings" => args.plan.target_settings = value,
            "--engine-settings" => args.plan.engine_settings = value,
            "--out" => args.out = PathBuf::from(value),
            "--note" => args.notes.push(value),
            other => {
                bail!("unknown flag {other} (see the comment at the top of bench_replicas.rs)")
            }
        }
    }
    if args.plan.objects == 0 || args.plan.workspaces == 0 {
        bail!("--objects and --workspaces must be positive");
    }
    if args.plan.replicas.is_empty() || args.plan.replicas.contains(&0) {
        bail!("--replicas must list replica counts of at least 1, e.g. 1,2,3");
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
        bail!("no environment (run `cargo xtask bench replicas`)");
    };
    let load_start = report::load_average();
    let result = replicas::run(&env, &args.plan).await?;
    let machine = Machine::describe(load_start, args.notes.clone());
    let table = replicas::markdown(&result);
    let document = json!({ "plan": args.plan, "machine": machine, "result": result });
    report::write_outputs(&args.out, "replicas", &document, &table, &machine)?;
    Ok(())
}
