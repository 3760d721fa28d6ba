//! The benchmark's outputs: `sync.json` (one object per engine), a Markdown table and a PNG of
//! the propagation latency distributions.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::run::{Outcome, Plan};

/// Where and on what the run happened, printed beside every result.
#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    /// Load average (1, 5, 15 minutes) when the run started and ended.
    pub load_start: String,
    pub load_end: String,
    /// What was known about the engines' builds.
    pub notes: Vec<String>,
}

impl Machine {
    /// Reads `/proc` for the machine's description.
    pub fn describe(load_start: String, notes: Vec<String>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            load_start,
            load_end: load_average(),
            notes,
        }
    }

    /// One line for the terminal: what the figures were measured on, and how busy it was.
    pub fn summary(&self) -> String {
        format!(
            "machine: {} CPUs ({}), {:.1} GiB; load average {} at the start, {} at the end",
            self.cpus, self.cpu_model, self.memory_gib, self.load_start, self.load_end
        )
    }
}

/// Writes a benchmark's `<name>.json` (`document`) and `<name>.md` (`table`) into `dir`, and
/// prints the table, the machine and where the files are.
pub fn write_outputs(
    dir: &Path,
    name: &str,
    document: &Value,
    table: &str,
    machine: &Machine,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(document)?,
    )?;
    std::fs::write(dir.join(format!("{name}.md")), table)?;
    println!("{table}");
    println!("{}", machine.summary());
    println!("written: {}/{name}.json, {name}.md", dir.display());
    Ok(())
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sync.json`: `engines` holds one object per engine (the latencies themselves stay out: they
/// are in the plot).
pub fn json(plan: &Plan, machine: &Machine, outcomes: &[Outcome]) -> Result<Value> {
    let mut engines = Map::new();
    for outcome in outcomes {
        let mut value = serde_json::to_value(outcome)?;
        if let Some(object) = value.as_object_mut() {
            object.remove("latencies_ms");
        }
        engines.insert(outcome.engine.clone(), value);
    }
    Ok(json!({ "plan": plan, "machine": machine, "engines": engines }))
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The Markdown table, with throughput as a ratio of each floor that ran: the bare floor
/// (copies only) and the finalizer floor (what keeping invariant I3 costs on kcp).
pub fn markdown(plan: &Plan, outcomes: &[Outcome]) -> String {
    let ratio = |floor: &str, o: &Outcome| {
        outcomes
            .iter()
            .find(|f| f.engine == floor)
            .map_or("–".into(), |f| {
                format!("{:.2}x", o.objects_per_s / f.objects_per_s.max(1e-9))
            })
    };
    let mut out = format!(
        "{} objects in {} workspaces; churn {} changes/s for {} s; status on {} objects.\n\n",
        plan.objects, plan.workspaces, plan.rate, plan.churn_seconds, plan.status_objects
    );
    out.push_str(
        "| engine | targets | p50 | p99 | max | not arrived | status p50 | status p99 | cold objects/s | \
         vs floor | vs finalizer floor | RSS rest (peak) MiB | CPU rest / churn / peak | writes at rest | restart: writes, ready | load avg (start → end) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        // No change or status measured (an engine that copied nothing in time): no figure,
        // rather than a latency of 0.
        let latency = |v: f64| {
            if o.latencies_ms.is_empty() {
                "–".into()
            } else {
                ms(v)
            }
        };
        let status = |v: f64| {
            if o.status_objects == o.status_not_arrived {
                "–".into()
            } else {
                ms(v)
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} of {} | {} | {} | {} | {} | {} | {} ({}) | {} / {} / {} | {} | {} | {} → {} |\n",
            o.engine,
            o.targets,
            latency(o.p50_ms),
            latency(o.p99_ms),
            latency(o.max_ms),
            o.changes_not_arrived,
            o.changes,
            status(o.status_p50_ms),
            status(o.status_p99_ms),
            if o.converged {
                format!("{:.0}", o.objects_per_s)
            } else {
                super::cold::figure(false, o.copies, plan.objects, o.cold_seconds)
            },
            ratio("raw-floor", o),
            ratio("raw-finalizer-floor", o),
            opt(o.rss_mib, 0),
            opt(o.rss_peak_mib, 0),
            opt(o.cpu_rest_cores, 2),
            opt(o.cpu_churn_cores, 2),
            opt(o.cpu_peak_cores, 2),
            o.writes_at_rest.map_or("–".into(), |w| w.to_string()),
            match (o.restart_writes, o.restart_ready_seconds) {
                (Some(w), Some(r)) => format!("{w}, {r:.1} s"),
                _ => "–".into(),
            },
            o.load_start.split(' ').next().unwrap_or_default(),
            o.load_end.split(' ').next().unwrap_or_default(),
        ));
    }
    out
}

/// Writes `sync.json`, `sync.md` and `sync.png` into `dir`.
pub fn write(dir: &Path, plan: &Plan, machine: &Machine, outcomes: &[Outcome]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("sync.json"),
        serde_json::to_vec_pretty(&json(plan, machine, outcomes)?)?,
    )?;
    std::fs::write(dir.join("sync.md"), markdown(plan, outcomes))?;
    super::plot::latencies(&dir.join("sync.png"), outcomes).context("drawing sync.png")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn outcome(engine: &str, objects_per_s: f64) -> Outcome {
        Outcome {
            engine: engine.into(),
            targets: 1,
            p50_ms: 12.0,
            p99_ms: 80.0,
            max_ms: 12_345.0,
            changes: 100,
            changes_not_arrived: 0,
            status_p50_ms: 30.0,
            status_p99_ms: 90.0,
            status_max_ms: 95.0,
            status_objects: 2,
            status_not_arrived: 0,
            objects_per_s,
            cold_seconds: 1.0,
            converged: true,
            copies: 10,
            rss_mib: Some(40.0),
            rss_peak_mib: Some(60.0),
            cpu_rest_cores: Some(0.01),
            cpu_churn_cores: Some(0.2),
            cpu_peak_cores: Some(0.9),
            writes_at_rest: Some(0),
            restart_writes: Some(0),
            restart_ready_seconds: Some(1.5),
            load_start: "1.00 1.00 1.00".into(),
            load_end: "2.00 1.00 1.00".into(),
            latencies_ms: vec![10.0, 12.0, 80.0],
        }
    }

    fn plan() -> Plan {
        Plan {
            objects: 10,
            workspaces: 2,
            rate: 20.0,
            churn_seconds: 5,
            status_objects: 2,
            rest_seconds: 5,
            restart_seconds: 5,
            cold_limit_seconds: 60,
            ferry_engine: String::new(),
            out: std::path::PathBuf::new(),
        }
    }

    #[test]
    fn the_json_has_one_object_per_engine_with_the_named_fields() {
        let machine = Machine::describe(load_average(), vec![]);
        let value = json(
            &plan(),
            &machine,
            &[outcome("ferry", 50.0), outcome("raw-floor", 100.0)],
        )
        .expect("serialises");
        let ferry = &value["engines"]["ferry"];
        for field in [
            "p50_ms",
            "p99_ms",
            "max_ms",
            "status_p99_ms",
            "objects_per_s",
            "rss_mib",
            "writes_at_rest",
        ] {
            assert!(ferry.get(field).is_some(), "{field} missing in {ferry}");
        }
        assert!(ferry.get("latencies_ms").is_none());
        assert!(value["engines"]["raw-floor"].is_object());
    }

    #[test]
    fn the_table_gives_throughput_as_a_ratio_of_the_floor() {
        let table = markdown(
            &plan(),
            &[outcome("ferry", 50.0), outcome("raw-floor", 100.0)],
        );
        assert!(
            table.contains("| ferry | 1 | 12 ms | 80 ms | 12.3 s |"),
            "{table}"
        );
        assert!(table.contains("| 0.50x | – |"), "{table}");
        assert!(table.contains("| 1.00x | – |"), "{table}");
    }

    #[test]
    fn the_table_gives_throughput_as_a_ratio_of_each_floor() {
        let table = markdown(
            &plan(),
            &[
                outcome("ferry", 50.0),
                outcome("raw-floor", 100.0),
                outcome("raw-finalizer-floor", 40.0),
            ],
        );
        assert!(
            table.contains("| vs floor | vs finalizer floor |"),
            "{table}"
        );
        assert!(table.contains("| 50 | 0.50x | 1.25x |"), "{table}");
        assert!(table.contains("| 40 | 0.40x | 1.00x |"), "{table}");
    }

    #[test]
    fn an_engine_that_did_not_converge_has_a_row_saying_how_far_it_got() {
        let mut slow = outcome("api-syncagent", 0.5);
        slow.converged = false;
        slow.copies = 4;
        slow.cold_seconds = 8.0;
        let table = markdown(&plan(), &[slow, outcome("raw-floor", 100.0)]);
        assert!(
            table.contains("| did not converge: 4 of 10 copies in 8 s (0.5/s) | 0.01x |"),
            "{table}"
        );
        // Its other phases' figures are in the same row.
        assert!(
            table.contains("| api-syncagent | 1 | 12 ms | 80 ms |"),
            "{table}"
        );
        // One that copied nothing in time has no latency to show.
        let mut none = outcome("api-syncagent", 0.0);
        (none.converged, none.copies, none.changes) = (false, 0, 0);
        none.latencies_ms.clear();
        none.status_objects = 0;
        let table = markdown(&plan(), &[none]);
        assert!(
            table.contains("| api-syncagent | 1 | – | – | – | 0 of 0 | – | – |"),
            "{table}"
        );
        let machine = Machine::describe(load_average(), vec![]);
        let mut slow = outcome("api-syncagent", 0.5);
        slow.converged = false;
        let value = json(&plan(), &machine, &[slow]).expect("serialises");
        assert_eq!(value["engines"]["api-syncagent"]["converged"], false);
    }
}
