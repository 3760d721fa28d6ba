//! Narrated walk through the kcp model on the running test environment (`cargo xtask demo`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_e2e::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let Some(env) = ferry_e2e::Env::get()? else {
        anyhow::bail!("no environment running: start one with `cargo xtask env up`");
    };
    let report = ferry_e2e::kcp_model::tour(&env, &|line| println!("{line}")).await?;
    println!();
    println!("Explore it yourself:");
    println!("  source {}/env.sh", env.dir.display());
    println!("  kubectl --context root get workspaces");
    println!(
        "  kubectl --server {}/clusters/{} get deployments -A",
        kube_base(&env),
        report.tenant.path
    );
    println!(
        "  kubectl --server {}/clusters/* get deployments -A   # the virtual workspace",
        report.virtual_workspace_url
    );
    Ok(())
}

fn kube_base(env: &ferry_e2e::Env) -> String {
    std::fs::read_to_string(env.kcp_kubeconfig())
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        })
        .and_then(|server| server.split("/clusters/").next().map(str::to_string))
        .unwrap_or_else(|| "https://127.0.0.1:<port>".into())
}
