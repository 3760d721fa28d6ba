//! Hot reload of a placement plugin on the real environment: `ferry run` watches its plugin
//! files; a component that fails to load, or fails the reference's golden cases, is refused
//! with a Warning log line and `ferry_plugin_reloads_total`, and nothing moves; a good one is
//! swapped in while Deployments are being created, and every object moves where it says.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_e2e::ferry::{FerryOptions, plugin_dir};
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{Env, eventually};
use kube::api::ListParams;

/// Objects of the test: annotated for `custom-placement` to go to region `us` (cluster-2).
const REGION: (&str, &str) = ("placement.example.com/region", "us");

/// The golden case every placement component must pass here: an object asking for region
/// `us`, with only the `us` target offered, goes there. The contract fixture (every target)
/// and `custom-placement` (the object's region) both pass it; `label-placement` without
/// configuration (nowhere) does not.
fn write_case(dir: &Path) -> Result<()> {
    let case = dir.join("us-object-goes-to-the-us-target");
    std::fs::create_dir_all(&case)?;
    for (file, text) in [
        ("case.yaml", "hook: place\n"),
        (
            "object.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  \
             annotations: {placement.example.com/region: us}\n",
        ),
        (
            "targets.yaml",
            "- {name: cluster-2, labels: {region: us}}\n",
        ),
        ("expected.yaml", "[cluster-2]\n"),
    ] {
        std::fs::write(case.join(file), text)?;
    }
    Ok(())
}

fn component(name: &str) -> Result<Vec<u8>> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).with_context(|| format!("{} (run `cargo xtask plugins`)", path.display()))
}

/// Replaces the watched file the way a deployment does: a new file renamed over the old one.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Names of the copies of tenant 0's Deployments on `cluster`.
async fn copies_on(s: &Scenario, cluster: &str) -> Result<BTreeSet<String>> {
    Ok(s.copies(0, cluster)
        .await?
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect())
}

/// The running process's `ferry_plugin_reloads_total` for `outcome`.
async fn reloads(s: &Scenario, outcome: &str) -> Result<u64> {
    let text = s.ferry.scrape_text().await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("ferry_plugin_reloads_total{")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

#[tokio::test]
async fn a_swapped_placement_plugin_moves_objects_and_a_broken_one_changes_nothing() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let dir = env
        .dir
        .join("e2e")
        .join(format!("hot-reload-{}", ferry_e2e::unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    let placement = dir.join("placement.wasm");
    std::fs::write(&placement, component("contract-v0-2-0")?)?;
    let cases = dir.join("cases");
    write_case(&cases)?;
    let options = FerryOptions {
        placement: Some(format!(
            "{{plugin: {}, cases: {}}}",
            placement.display(),
            cases.display()
        )),
        plugins_extra: "reloadIntervalMs: 250".into(),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "reload", 1, options).await?;
    let result = async {
        let first: Vec<String> = (0..4).map(|i| format!("web-{i}")).collect();
        for name in &first {
            s.apply_deployment(0, name, 1, &[REGION]).await?;
        }
        // The contract fixture without configuration places on every target.
        for name in &first {
            s.wait_on_all(0, name, true).await?;
        }

        // Broken: not a component. Refused; every copy stays.
        let good = std::fs::read(&placement)?;
        replace(&placement, &good[..good.len() / 2])?;
        eventually(
            "the truncated component to be refused",
            Duration::from_secs(30),
            || async { Ok((reloads(&s, "invalid-component").await? >= 1).then_some(())) },
        )
        .await?;
        // Broken in what it does: label-placement without configuration places nowhere and
        // would delete every copy. Its golden case catches it.
        replace(&placement, &component("label-placement")?)?;
        eventually(
            "the component failing its golden case to be refused",
            Duration::from_secs(30),
            || async { Ok((reloads(&s, "cases-failed").await? >= 1).then_some(())) },
        )
        .await?;
        // A resync's worth of time: nothing moved.
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.ferry.check_running()?;
        let expected: BTreeSet<String> = first.iter().cloned().collect();
        for cluster in ["cluster-1", "cluster-2"] {
            ensure!(
                copies_on(&s, cluster).await? == expected,
                "refused components changed nothing on {cluster}"
            );
        }
        ensure!(reloads(&s, "loaded").await? == 0);
        let log = s.ferry.log();
        ensure!(
            log.contains("plugin reload refused") && log.contains("golden case"),
            "the refusals are logged with their reason:\n{log}"
        );

        // Good, under load: custom-placement (the object's region) swapped in while more
        // Deployments are being created. Every object ends up on cluster-2 only.
        replace(&placement, &component("custom-placement")?)?;
        let more: Vec<String> = (4..10).map(|i| format!("web-{i}")).collect();
        for name in &more {
            s.apply_deployment(0, name, 1, &[REGION]).await?;
        }
        let all: BTreeSet<String> = first.iter().chain(&more).cloned().collect();
        eventually(
            "every object to move to cluster-2 only",
            Duration::from_secs(60),
            || async {
                let on_1 = copies_on(&s, "cluster-1").await?;
                let on_2 = copies_on(&s, "cluster-2").await?;
                Ok((on_1.is_empty() && on_2 == all).then_some(()))
            },
        )
        .await?;
        ensure!(reloads(&s, "loaded").await? == 1);
        // The digest of the running component is in the metrics.
        let digest = {
            use sha2::Digest as _;
            let bytes = component("custom-placement")?;
            sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let text = s.ferry.scrape_text().await?;
        ensure!(
            text.lines()
                .any(|l| l.starts_with("ferry_plugin_component_info{")
                    && l.contains("hook=\"placement\"")
                    && l.contains("resource=\"deployments.apps\"")
                    && l.contains(&digest)
                    && l.ends_with(" 1")),
            "the running placement component's digest {digest} in the metrics:\n{text}"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}
