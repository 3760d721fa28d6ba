//! `ferry plugin record` on the real environment: a live Deployment placed in one region
//! becomes golden cases (placement, transform per placed target, status with the live copy),
//! `ferry plugin test` replays each with the configured plugin and passes, and a different
//! placement plugin fails the recorded case.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use ferry_e2e::Env;
use ferry_e2e::ferry::{self, FerryOptions, ferry_bin, plugin_dir};
use ferry_e2e::scenario::{Scenario, all_ready};
use serde_json::Value;

/// Runs `ferry <args>`: (exit code, stdout + stderr).
fn ferry_cli(cwd: &Path, args: &[&str]) -> Result<(i32, String)> {
    let output = Command::new(ferry_bin()?)
        .current_dir(cwd)
        .args(args)
        .env("FERRY_PLUGIN_DIR", plugin_dir())
        .env("FERRY_CODE_CACHE", cwd.join(".code-cache"))
        .output()
        .context("running ferry")?;
    Ok((
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

fn folder_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn yaml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(serde_yaml::from_str(&text)?)
}

#[tokio::test]
async fn a_live_object_becomes_golden_cases_that_replay() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "record", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[("sync.ferry.dev/placement", "region=eu")])
            .await?;
        s.wait_copy(0, "cluster-1", "web", "copy to exist", |c| c.is_some())
            .await?;
        s.wait_upstream(0, "web", "status summed from the copy", |o| all_ready(o, 1))
            .await?;

        let out = s.ferry.dir.join("recorded");
        std::fs::create_dir_all(&out)?;
        let config = s.ferry.config.display().to_string();
        let tenant = s.tenants[0].path.clone();
        let (code, output) = ferry_cli(
            &out,
            &[
                "plugin",
                "record",
                "--config",
                &config,
                &tenant,
                "deployments.apps",
                "demo/web",
                "--out",
                ".",
            ],
        )?;
        ensure!(code == 0, "ferry plugin record failed ({code}):\n{output}");
        ensure!(!output.contains("REPLAY DIFFERS"), "{output}");
        let printed = output;

        // Placement: the object's live inputs, and today's answer: cluster-1 only.
        let place = out.join("placement").join("demo-web");
        let case = yaml(&place.join("case.yaml"))?;
        ensure!(case["hook"] == "place", "{case}");
        ensure!(
            case["context"]["workspacePath"] == tenant.as_str(),
            "{case}"
        );
        ensure!(
            case["context"]["logicalCluster"] == s.tenants[0].logical_cluster.as_str(),
            "{case}"
        );
        ensure!(yaml(&place.join("expected.yaml"))? == serde_json::json!(["cluster-1"]));
        ensure!(yaml(&place.join("object.yaml"))?["metadata"]["name"] == "web");
        let targets = yaml(&place.join("targets.yaml"))?;
        ensure!(targets.as_array().map(Vec::len) == Some(2), "{targets}");

        // Transform: one case for the placed target, its copy in the mapped namespace.
        let transform = out.join("transform").join("demo-web-cluster-1");
        let copy = yaml(&transform.join("expected.yaml"))?;
        ensure!(
            copy["metadata"]["namespace"] == ferry::mapped_namespace(&s.tenants[0], "demo"),
            "{copy}"
        );
        ensure!(!out.join("transform").join("demo-web-cluster-2").exists());

        // Status: the live copy is an input, the summed status the expected result.
        let status = out.join("status").join("demo-web");
        let live = yaml(&status.join("downstream").join("cluster-1.yaml"))?;
        ensure!(live["status"]["readyReplicas"] == 1, "{live}");
        ensure!(yaml(&status.join("expected.yaml"))?["readyReplicas"] == 1);

        // Replayed by `ferry plugin test` with the configured plugins: every case passes.
        for (plugin, folder) in [
            ("label-placement", "placement"),
            ("default-transform", "transform"),
            ("deployment-status", "status"),
        ] {
            let folder = out.join(folder).display().to_string();
            let (code, output) = ferry_cli(&out, &["plugin", "test", plugin, &folder])?;
            ensure!(code == 0, "replay of {folder} failed:\n{output}");
            ensure!(output.trim_end().ends_with("passed, 0 failed"), "{output}");
            ensure!(
                printed.contains(&format!(
                    "ferry plugin test {plugin} ./{}",
                    folder_name(&folder)
                )),
                "record printed how to replay {plugin}:\n{printed}"
            );
        }
        // A regression is caught: another placement plugin does not answer the same.
        let placement = out.join("placement").display().to_string();
        let (code, output) = ferry_cli(&out, &["plugin", "test", "custom-placement", &placement])?;
        ensure!(
            code == 1,
            "a different plugin fails the recorded case:\n{output}"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}
