//! Smoke test of the kcp model on the real environment (kcp + two kube-apiservers).

#[tokio::test]
async fn the_kcp_model_ferry_relies_on_holds_against_a_real_kcp() -> anyhow::Result<()> {
    let Some(env) = ferry_e2e::Env::get()? else {
        return Ok(());
    };
    let report = ferry_e2e::kcp_model::tour(&env, &|line| eprintln!("{line}")).await?;
    assert!(
        report
            .virtual_workspace_url
            .contains("/services/apiexport/")
    );
    assert!(report.virtual_workspace_url.ends_with("/kubernetes"));
    Ok(())
}
