//! `bench-sync`: the engines of `cargo xtask bench sync`, one after the other on the same kcp
//! and targets, then `sync.json`, `sync.md` and `sync.png`.
//!
//! `cargo xtask bench sync` builds everything in release mode, brings the environment up,
//! prepares api-syncagent and runs this with `FERRY_BIN`, `FERRY_PLUGIN_DIR` and the flags below.
//!
//! Flags: `--engines ferry,ferry-2,api-syncagent,raw,raw-finalizer` `--objects N` `--workspaces W`
//! `--rate CHANGES_PER_S` `--churn-seconds S` `--status-objects K` `--rest-seconds S`
//! `--restart-seconds S` `--cold-limit-seconds S` (default: 120 plus 0.25 per object; an engine
//! not converged by then goes on with the objects it copied) `--ferry-engine 'workers: 32'`
//! (keys added to Ferry's `engine:` section) `--agent-command FILE` `--out DIR` `--note TEXT`
//! (repeatable).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ferry_e2e::Env;
use ferry_e2e::bench::cold;
use ferry_e2e::bench::engine::Kind;
use ferry_e2e::bench::report::{self, Machine};
use ferry_e2e::bench::run::{self, Plan};

struct Args {
    engines: Vec<String>,
    plan: Plan,
    agent_command: Option<PathBuf>,
    out: PathBuf,
    notes: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        engines: ["ferry", "ferry-2", "api-syncagent", "raw", "raw-finalizer"]
            .map(String::from)
            .to_vec(),
        plan: Plan {
            objects: 1000,
            workspaces: 5,
            rate: 20.0,
            churn_seconds: 120,
            status_objects: 50,
            rest_seconds: 30,
            restart_seconds: 20,
            cold_limit_seconds: 0,
            ferry_engine: String::new(),
            out: PathBuf::from("target/bench"),
        },
        agent_command: None,
        out: PathBuf::from("target/bench"),
        notes: Vec::new(),
    };
    let mut cold_limit = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        let number = |v: String| -> Result<u64> {
            v.parse()
                .with_context(|| format!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--engines" => args.engines = value()?.split(',').map(str::to_string).collect(),
            "--objects" => args.plan.objects = number(value()?)? as usize,
            "--workspaces" => args.plan.workspaces = number(value()?)? as usize,
            "--rate" => {
                let v = value()?;
                args.plan.rate = v
                    .parse()
                    .with_context(|| format!("--rate: {v:?} is not a number"))?;
            }
            "--churn-seconds" => args.plan.churn_seconds = number(value()?)?,
            "--status-objects" => args.plan.status_objects = number(value()?)? as usize,
            "--rest-seconds" => args.plan.rest_seconds = number(value()?)?,
            "--restart-seconds" => args.plan.restart_seconds = number(value()?)?,
            "--cold-limit-seconds" => cold_limit = Some(number(value()?)?),
            "--ferry-engine" => args.plan.ferry_engine = value()?,
            "--agent-command" => args.agent_command = Some(PathBuf::from(value()?)),
            "--out" => {
                args.out = PathBuf::from(value()?);
                args.plan.out = args.out.clone();
            }
            "--note" => args.notes.push(value()?),
            other => bail!("unknown flag {other} (see the comment at the top of bench_sync.rs)"),
        }
    }
    if args.plan.objects == 0 || args.plan.workspaces == 0 || args.plan.rate <= 0.0 {
        bail!("--objects, --workspaces and --rate must be positive");
    }
    if args.plan.status_objects > 150 / 2 {
        bail!("--status-objects must be at most 75: each target's simulated nodes hold 150 Pods");
    }
    args.plan.status_objects = args.plan.status_objects.min(args.plan.objects);
    args.plan.cold_limit_seconds =
        cold_limit.unwrap_or_else(|| cold::default_limit(args.plan.objects).as_secs());
    if args.plan.cold_limit_seconds == 0 {
        bail!("--cold-limit-seconds must be positive");
    }
    Ok(args)
}

fn kind(name: &str, agent_command: Option<&PathBuf>) -> Result<Kind> {
    Ok(match name {
        "ferry" => Kind::Ferry { targets: 1 },
        "ferry-2" => Kind::Ferry { targets: 2 },
        "raw" => Kind::Raw,
        "raw-finalizer" => Kind::RawFinalizer,
        "api-syncagent" => Kind::ApiSyncagent {
            command: agent_command.cloned().context(
                "api-syncagent needs --agent-command (cargo xtask bench sync passes it)",
            )?,
        },
        other => {
            bail!("unknown engine {other:?}: ferry, ferry-2, api-syncagent, raw or raw-finalizer")
        }
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_e2e::exit_code(bench().await)
}

async fn bench() -> Result<()> {
    let args = parse_args()?;
    let kinds = args
        .engines
        .iter()
        .map(|e| kind(e, args.agent_command.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let Some(env) = Env::get()? else {
        bail!("no environment (run `cargo xtask bench sync`)");
    };
    let load_start = report::load_average();
    let mut outcomes = Vec::new();
    let mut failed = Vec::new();
    for kind in kinds {
        match run::run(&env, kind.clone(), &args.plan).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => failed.push(format!("{}: {err:#}", kind.key())),
        }
    }
    let machine = Machine::describe(load_start, args.notes.clone());
    report::write(&args.out, &args.plan, &machine, &outcomes)?;
    println!("{}", report::markdown(&args.plan, &outcomes));
    println!("{}", machine.summary());
    println!(
        "written: {}/sync.json, sync.md, sync.png",
        args.out.display()
    );
    if !failed.is_empty() {
        bail!("some engines did not finish:\n{}", failed.join("\n"));
    }
    Ok(())
}
