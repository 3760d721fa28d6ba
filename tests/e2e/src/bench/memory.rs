//! `cargo xtask bench memory`: Ferry's resident memory at rest with N synced objects, for
//! several N in one run, so the growth per object is a slope measured on one machine at one
//! time. See docs/benchmarks/memory.md.
//!
//! One Ferry (release build, one target) runs throughout. For each size, ascending: the
//! missing objects are created upstream, Ferry converges (every copy exists, its queue is
//! empty), settles, and its RSS is sampled at rest ("steady": the process that did the cold
//! sync). Then it is restarted and sampled again at rest ("restarted": what a process that
//! only listed N objects holds), and the restarted process's peak (`VmHWM`, the relist).
//! Each variant (another `ferry` binary, e.g. the build before a change) is restarted on the
//! same objects in turn, so a change's before and after are measured in the same run.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

use super::engine::ferry_tenants;
use super::procstat;
use super::run::{Key, create_objects};
use crate::Env;
use crate::ferry::{self, Ferry, FerryOptions, deployments};
use crate::kcp::KcpAdmin;

/// The sizes and pace of a run.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryPlan {
    /// Objects synced at each measurement, ascending.
    pub sizes: Vec<usize>,
    /// Tenant workspaces the objects are spread over.
    pub workspaces: usize,
    /// How long RSS is sampled at rest (once per second).
    pub rest_seconds: u64,
    /// Wait after convergence before sampling (late status writes, freed buffers).
    pub settle_seconds: u64,
    /// Also restart Ferry at each size and measure the fresh process.
    pub restart: bool,
    /// Other builds restarted on the same objects at each size: (name, binary).
    pub variants: Vec<(String, std::path::PathBuf)>,
    /// Keys added to the target's configuration (pacing that does not limit the cold sync).
    pub target_settings: String,
    /// Keys added to the engine's configuration.
    pub engine_settings: String,
}

/// RSS of one size.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub objects: usize,
    /// Seconds from the last creation until every copy existed and the queue was empty.
    pub converge_seconds: f64,
    /// Mean RSS at rest of the process that synced the objects, MiB.
    pub steady_mib: f64,
    /// Mean RSS at rest of a process restarted with the objects in place, MiB.
    pub restarted_mib: Option<f64>,
    /// Highest RSS of the restarted process (`VmHWM`: start-up and the relist), MiB.
    pub restart_peak_mib: Option<f64>,
    /// The variants, restarted on the same objects.
    pub variants: Vec<Restarted>,
    /// Load average (1, 5, 15 min) when this size's measurement ended.
    pub load: String,
}

/// One variant's process restarted with the objects in place.
#[derive(Clone, Debug, Serialize)]
pub struct Restarted {
    pub variant: String,
    /// Mean RSS at rest, MiB.
    pub rss_mib: f64,
    /// `VmHWM`, MiB.
    pub peak_mib: Option<f64>,
}

/// Least-squares slope and intercept of `(x, y)`; `None` with fewer than two distinct x.
pub fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    Some((slope, mean_y - slope * mean_x))
}

/// Growth per object in KiB and the intercept in MiB of one column of `points`.
pub fn growth(points: &[Point], column: impl Fn(&Point) -> Option<f64>) -> Option<(f64, f64)> {
    let xy: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((p.objects as f64, column(p)?)))
        .collect();
    fit(&xy).map(|(slope, intercept)| (slope * 1024.0, intercept))
}

/// Runs the plan with one Ferry and returns one point per size.
pub async fn run(env: &Env, plan: &MemoryPlan) -> Result<Vec<Point>> {
    let admin = KcpAdmin::new(env).await?;
    let suffix = crate::unique_suffix();
    let provider = ferry::platform(&admin, &format!("bench-memory-{suffix}")).await?;
    eprintln!("==> memory: {} workspaces", plan.workspaces);
    let tenants = ferry_tenants(&admin, &provider, "memory", &suffix, plan.workspaces).await?;
    let copy_namespaces: HashSet<String> = tenants
        .iter()
        .map(|t| ferry::mapped_namespace(t, "demo"))
        .collect();
    let upstream: Vec<Api<DynamicObject>> = tenants
        .iter()
        .map(|t| {
            Ok(Api::namespaced_with(
                admin.workspace(&t.path)?,
                "demo",
                &deployments(),
            ))
        })
        .collect::<Result<_>>()?;
    let options = FerryOptions {
        defer_start: true,
        placement_default: "region=eu".into(),
        target_extra: plan.target_settings.clone(),
        engine_extra: plan.engine_settings.clone(),
        ..FerryOptions::default()
    };
    let mut ferry = Ferry::start(env, &provider, &options)?;
    let target = env.cluster_client(crate::CLUSTERS[0]).await?;
    let copies = Arc::new(Mutex::new(HashSet::new()));
    let counter = count_copies(target.clone(), copy_namespaces.clone(), copies.clone());

    let result = measure(&mut ferry, plan, &upstream, &copies).await;
    counter.abort();
    ferry.kill();
    if let Err(err) = &result {
        let log = ferry.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "memory benchmark failed: {err:#}\n---- ferry log (last lines) ----\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // Leave nothing behind for the next run (deletion continues in the background).
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(target);
    for ns in &copy_namespaces {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
    for tenant in tenants.iter().chain([&provider]) {
        if let Some(name) = tenant.path.strip_prefix("root:") {
            let _ = admin.delete_workspace("root", name).await;
        }
    }
    result
}

async fn measure(
    ferry: &mut Ferry,
    plan: &MemoryPlan,
    upstream: &[Api<DynamicObject>],
    copies: &Arc<Mutex<HashSet<(String, String)>>>,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let mut created = 0;
    for &size in &plan.sizes {
        if size > created {
            eprintln!("    creating objects {created}..{size} upstream");
            let keys: Vec<Key> = (created..size).map(|i| (i % plan.workspaces, i)).collect();
            for chunk in keys.chunks(1000) {
                create_objects(upstream, chunk).await?;
            }
            created = size;
        }
        let started = Instant::now();
        if ferry.pid().is_none() {
            ferry.restart()?;
        }
        converge(ferry, copies, size).await?;
        let converge_seconds = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(plan.settle_seconds)).await;
        let steady_mib = rest_rss(ferry, plan.rest_seconds).await?;
        eprintln!(
            "    {size} objects: converged in {converge_seconds:.0}s, {steady_mib:.1} MiB at rest"
        );
        let (mut restarted_mib, mut restart_peak_mib) = (None, None);
        if plan.restart {
            let (rss, peak) = restarted(ferry, plan, copies, size, "ferry").await?;
            restarted_mib = Some(rss);
            restart_peak_mib = peak;
        }
        let mut variants = Vec::new();
        for (variant, binary) in &plan.variants {
            ferry.use_binary(binary.clone());
            let (rss_mib, peak_mib) = restarted(ferry, plan, copies, size, variant).await?;
            variants.push(Restarted {
                variant: variant.clone(),
                rss_mib,
                peak_mib,
            });
        }
        if !plan.variants.is_empty() {
            // The next size's cold sync runs the build under test again.
            ferry.use_binary(crate::ferry::ferry_bin()?);
            ferry.restart()?;
        }
        points.push(Point {
            objects: size,
            converge_seconds,
            steady_mib,
            restarted_mib,
            restart_peak_mib,
            variants,
            load: super::report::load_average(),
        });
    }
    Ok(points)
}

/// Restarts Ferry on the objects in place; its mean RSS at rest and its peak.
async fn restarted(
    ferry: &mut Ferry,
    plan: &MemoryPlan,
    copies: &Arc<Mutex<HashSet<(String, String)>>>,
    size: usize,
    name: &str,
) -> Result<(f64, Option<f64>)> {
    ferry.restart()?;
    converge(ferry, copies, size).await?;
    tokio::time::sleep(Duration::from_secs(plan.settle_seconds)).await;
    let rss = rest_rss(ferry, plan.rest_seconds).await?;
    let peak = ferry.peak_rss_mib();
    eprintln!(
        "    {size} objects, {name} restarted: {rss:.1} MiB at rest, peak {:.1} MiB",
        peak.unwrap_or_default()
    );
    Ok((rss, peak))
}

/// Waits until Ferry is ready, every one of `size` copies exists and its queue is empty.
async fn converge(
    ferry: &Ferry,
    copies: &Arc<Mutex<HashSet<(String, String)>>>,
    size: usize,
) -> Result<()> {
    // Generous: the machine is shared, and kcp and the target do most of the work.
    let deadline = Instant::now() + Duration::from_secs(600 + size as u64 / 5);
    loop {
        let ready = matches!(ferry.get("/readyz").await, Ok((200, _)));
        let present = copies.lock().expect("not poisoned").len();
        let queued = if ready && present >= size {
            queue_depth(ferry).await
        } else {
            None
        };
        if queued == Some(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not converged: ready {ready}, {present} of {size} copies, queue {queued:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keys waiting in Ferry's queues (ready and delayed), from its metrics.
async fn queue_depth(ferry: &Ferry) -> Option<u64> {
    let ready = ferry.metric("ferry_queue_ready").await.ok()?;
    let delayed = ferry.metric("ferry_queue_delayed").await.ok()?;
    Some(ready + delayed)
}

/// Mean RSS of Ferry over `seconds`, sampled once per second.
async fn rest_rss(ferry: &Ferry, seconds: u64) -> Result<f64> {
    let Some(pid) = ferry.pid() else {
        bail!("ferry is not running");
    };
    let mut samples = Vec::new();
    for _ in 0..seconds.max(1) {
        if let Some((rss, _)) = procstat::read(pid) {
            samples.push(rss);
        }
        tokio::time::sleep(procstat::INTERVAL).await;
    }
    if samples.is_empty() {
        bail!("ferry's /proc entry could not be read (did it exit?)");
    }
    Ok(samples.iter().sum::<f64>() / samples.len() as f64)
}

/// Counts the copies on the target (metadata only: the benchmark's own memory is not the
/// subject, but 50,000 full objects would still slow it down).
fn count_copies(
    client: kube::Client,
    namespaces: HashSet<String>,
    copies: Arc<Mutex<HashSet<(String, String)>>>,
) -> tokio::task::JoinHandle<()> {
    // `PartialObjectMeta` makes the list and watch ask for metadata only.
    let api: Api<PartialObjectMeta<k8s_openapi::api::apps::v1::Deployment>> = Api::all(client);
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let (object, present) = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, true),
                Ok(watcher::Event::Delete(o)) => (o, false),
                _ => continue,
            };
            let (Some(ns), Some(name)) = (object.metadata.namespace, object.metadata.name) else {
                continue;
            };
            if !namespaces.contains(&ns) {
                continue;
            }
            let mut copies = copies.lock().expect("not poisoned");
            if present {
                copies.insert((ns, name));
            } else {
                copies.remove(&(ns, name));
            }
        }
    })
}

/// One column of RSS figures of the table.
type Column = Box<dyn Fn(&Point) -> Option<f64>>;

/// The Markdown table of a run, with the growth per object.
pub fn markdown(points: &[Point]) -> String {
    let names: Vec<String> = points
        .first()
        .map(|p| p.variants.iter().map(|v| v.variant.clone()).collect())
        .unwrap_or_default();
    let mut out = String::from(
        "| objects | converged in | RSS at rest (MiB) | after a restart (MiB) | restart peak (MiB) |",
    );
    for name in &names {
        out.push_str(&format!(" {name}: after a restart (peak) |"));
    }
    out.push_str(" load average |\n|---|---|---|---|---|");
    out.push_str(&"---|".repeat(names.len()));
    out.push_str("---|\n");
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    for p in points {
        out.push_str(&format!(
            "| {} | {:.0} s | {:.1} | {} | {} |",
            p.objects,
            p.converge_seconds,
            p.steady_mib,
            opt(p.restarted_mib),
            opt(p.restart_peak_mib),
        ));
        for v in &p.variants {
            out.push_str(&format!(" {:.1} ({}) |", v.rss_mib, opt(v.peak_mib)));
        }
        out.push_str(&format!(" {} |\n", p.load));
    }
    let mut columns: Vec<(String, Column)> = vec![
        ("at rest".into(), Box::new(|p: &Point| Some(p.steady_mib))),
        (
            "after a restart".into(),
            Box::new(|p: &Point| p.restarted_mib),
        ),
    ];
    for (i, name) in names.iter().enumerate() {
        columns.push((
            format!("{name} after a restart"),
            Box::new(move |p: &Point| p.variants.get(i).map(|v| v.rss_mib)),
        ));
    }
    for (what, column) in columns {
        if let Some((kib, base)) = growth(points, column) {
            out.push_str(&format!(
                "\nGrowth {what}: {kib:.2} KiB per object over a base of {base:.1} MiB \
                 (least squares); projected at 50,000 objects: {:.0} MiB.\n",
                base + kib * 50_000.0 / 1024.0
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(objects: usize, steady: f64) -> Point {
        Point {
            objects,
            converge_seconds: 1.0,
            steady_mib: steady,
            restarted_mib: None,
            restart_peak_mib: None,
            variants: Vec::new(),
            load: String::new(),
        }
    }

    #[test]
    fn growth_is_the_least_squares_slope_in_kib_per_object() {
        // 20 MiB base, 2 KiB per object, with noise that cancels out.
        let points = [
            point(0, 20.5),
            point(1024, 22.0 - 0.5),
            point(2048, 24.0 + 0.5),
            point(4096, 28.0 - 0.5),
        ];
        let (kib, base) = growth(&points, |p| Some(p.steady_mib)).expect("a slope");
        assert!((kib - 2.0).abs() < 0.3, "{kib}");
        assert!((base - 20.0).abs() < 1.0, "{base}");
        assert!(growth(&points, |p| p.restarted_mib).is_none());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn the_table_has_a_row_per_size_and_the_growth() {
        let text = markdown(&[point(0, 20.0), point(1024, 22.0)]);
        assert!(text.contains("| 1024 | 1 s | 22.0 | – | – |"), "{text}");
        assert!(
            text.contains("Growth at rest: 2.00 KiB per object"),
            "{text}"
        );
        assert!(!text.contains("after a restart:"), "{text}");
        let mut with_variant = [point(0, 20.0), point(1024, 22.0)];
        for (p, rss) in with_variant.iter_mut().zip([30.0, 34.0]) {
            p.variants.push(Restarted {
                variant: "before".into(),
                rss_mib: rss,
                peak_mib: Some(40.0),
            });
        }
        let text = markdown(&with_variant);
        assert!(
            text.contains("| before: after a restart (peak) |"),
            "{text}"
        );
        assert!(text.contains("| 34.0 (40.0) |"), "{text}");
        assert!(
            text.contains("Growth before after a restart: 4.00 KiB"),
            "{text}"
        );
    }
}
