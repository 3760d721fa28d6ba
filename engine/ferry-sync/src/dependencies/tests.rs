//! The links between resources: what a snapshot is given, and who is woken by a change.
//! (The planner's use of them is tested in `plan::tests::dependencies`.)

use std::time::Duration;

use serde_json::json;

use super::*;

struct NoPlugins;

impl PluginChain for NoPlugins {
    fn place(&self, _: &ObjectContext, _: &Value, _: &[Target]) -> Result<Vec<String>, HookError> {
        Ok(Vec::new())
    }
    fn transform(
        &self,
        _: &ObjectContext,
        _: &Value,
        _: &Target,
    ) -> Result<Option<Value>, HookError> {
        Ok(None)
    }
    fn aggregate_status(
        &self,
        _: &ObjectContext,
        _: &Value,
        _: &[ferry_core::Downstream],
    ) -> Result<Option<Value>, HookError> {
        Ok(None)
    }
}

fn linked(name: &str, id: (&str, &str), placement: PlacementSource, lists: bool) -> Linked {
    let queue = OnceLock::new();
    let _ = queue.set(WorkQueue::new(
        Duration::from_millis(500),
        Duration::from_secs(60),
    ));
    Linked {
        name: name.into(),
        id: (id.0.into(), id.1.into()),
        placement,
        lists_dependencies: lists,
        plugins: Arc::new(NoPlugins),
        upstream: Default::default(),
        downstream: Default::default(),
        queue,
    }
}

fn links() -> Links {
    Links {
        resources: vec![
            linked(
                "deployments.apps",
                ("apps", "deployments"),
                PlacementSource::Plugin,
                true,
            ),
            linked(
                "configmaps",
                ("", "configmaps"),
                PlacementSource::Dependents,
                false,
            ),
            linked("services", ("", "services"), PlacementSource::Plugin, false),
        ],
        memo: HookMemo::default(),
    }
}

fn object(cluster: &str, namespace: &str, name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "X",
        "metadata": {"name": name, "namespace": namespace, "uid": name,
            "annotations": {"kcp.io/cluster": cluster}},
    }))
    .expect("object")
}

fn fill(store: &UpstreamStore, shard: &Arc<str>, objects: &[(&str, &str, &str)]) {
    store.add_shard(shard);
    store.replace_shard(
        shard,
        objects.iter().map(|(c, n, o)| object(c, n, o)).collect(),
    );
}

fn ready(links: &Links, name: &str) -> usize {
    links
        .find(name)
        .and_then(|l| l.queue.get())
        .map_or(0, |q| q.depth().ready)
}

#[test]
fn a_dependency_object_sees_the_dependents_of_its_namespace_only() {
    let links = links();
    let shard: Arc<str> = Arc::from("https://shard-1");
    fill(
        &links.resources[0].upstream,
        &shard,
        &[
            ("lc-a", "demo", "web"),
            ("lc-a", "demo", "api"),
            ("lc-a", "other", "web"),
            ("lc-b", "demo", "web"),
        ],
    );
    let key = UpstreamKey::new("lc-a", "demo", "app-config");
    let view = links
        .dependents_of("configmaps", &key, Some("https://shard-1"))
        .expect("placed by dependents");
    assert_eq!(view.reference, (String::new(), "configmaps".to_string()));
    let names: Vec<String> = view.dependents.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(names, vec!["lc-a|demo/api", "lc-a|demo/web"]);
    assert_eq!(view.incomplete, None);
    // Not for a resource placed by a plugin.
    assert!(links.dependents_of("services", &key, None).is_none());
}

#[test]
fn the_dependents_of_a_shard_not_listed_are_incomplete() {
    let links = links();
    let key = UpstreamKey::new("lc-a", "demo", "app-config");
    for shard in [None, Some("https://shard-2")] {
        let view = links
            .dependents_of("configmaps", &key, shard)
            .expect("placed by dependents");
        assert!(
            view.incomplete
                .as_deref()
                .is_some_and(|why| why.contains("deployments.apps")),
            "{view:?}"
        );
    }
}

#[test]
fn a_dependent_sees_the_dependency_objects_of_its_namespace_and_where_their_copies_are() {
    let links = links();
    let shard: Arc<str> = Arc::from("https://shard-1");
    fill(
        &links.resources[1].upstream,
        &shard,
        &[("lc-a", "demo", "app-config"), ("lc-a", "other", "x")],
    );
    let key = UpstreamKey::new("lc-a", "demo", "web");
    let view = links
        .dependencies_of("deployments.apps", &key, Some("https://shard-1"))
        .expect("lists dependencies");
    let configmaps = &view.resources[&(String::new(), "configmaps".to_string())];
    assert!(configmaps.listed);
    assert_eq!(
        configmaps.objects.keys().collect::<Vec<_>>(),
        vec!["app-config"]
    );
    assert!(configmaps.objects["app-config"].on.is_empty());
    assert!(
        links
            .dependencies_of("configmaps", &key, Some("https://shard-1"))
            .is_none()
    );
}

#[test]
fn a_change_wakes_the_other_side_of_the_dependency_in_the_same_namespace() {
    let links = links();
    let shard: Arc<str> = Arc::from("https://shard-1");
    fill(
        &links.resources[0].upstream,
        &shard,
        &[
            ("lc-a", "demo", "web"),
            ("lc-a", "demo", "api"),
            ("lc-a", "x", "y"),
        ],
    );
    fill(
        &links.resources[1].upstream,
        &shard,
        &[("lc-a", "demo", "app-config"), ("lc-b", "demo", "z")],
    );
    links.touched("services", "lc-a", "demo", true);
    assert_eq!(
        (
            ready(&links, "deployments.apps"),
            ready(&links, "configmaps")
        ),
        (0, 0)
    );
    // A Deployment's copy changed (its status): no reference can have changed.
    links.touched("deployments.apps", "lc-a", "demo", false);
    assert_eq!(ready(&links, "configmaps"), 0);
    links.touched("deployments.apps", "lc-a", "demo", true);
    assert_eq!(ready(&links, "configmaps"), 1);
    assert_eq!(ready(&links, "deployments.apps"), 0);
    // A ConfigMap's copy arrived on a target: the Deployments waiting for it look again.
    links.touched("configmaps", "lc-a", "demo", false);
    assert_eq!(ready(&links, "deployments.apps"), 2);
}

#[test]
fn references_merge_to_one_per_object_optional_only_if_every_mention_is() {
    let r = |name: &str, optional| ObjectRef {
        group: String::new(),
        resource: "configmaps".into(),
        name: name.into(),
        optional,
    };
    let merged = merge(&[r("b", true), r("a", true), r("b", false), r("a", true)]);
    assert_eq!(merged, vec![r("a", true), r("b", false)]);
    assert_eq!(describe(&merged[0]), "configmaps/a");
    let deployment = ObjectRef {
        group: "apps".into(),
        resource: "deployments".into(),
        name: "web".into(),
        optional: false,
    };
    assert_eq!(describe(&deployment), "deployments.apps/web");
}

#[test]
fn a_forgotten_object_leaves_the_memo() {
    let memo = HookMemo::default();
    let key = UpstreamKey::new("lc-a", "demo", "web");
    let answer = memo.dependencies("deployments.apps", &key, "v1", || Ok(Vec::new()));
    assert_eq!(answer, Recall::Fresh(Vec::new()));
    assert_eq!(memo.len(), 1);
    memo.forget("deployments.apps", &key);
    assert!(memo.is_empty());
}

#[test]
fn a_dependency_objects_skipped_targets_reach_its_dependents_view_and_changes_are_told() {
    let links = links();
    let shard: Arc<str> = Arc::from("https://shard-1");
    fill(
        &links.resources[1].upstream,
        &shard,
        &[("lc-a", "demo", "app-config")],
    );
    let config = UpstreamKey::new("lc-a", "demo", "app-config");
    let skipped = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    assert!(
        !links
            .memo
            .record_skipped("configmaps", &config, skipped(&[])),
        "nothing new"
    );
    assert!(
        links
            .memo
            .record_skipped("configmaps", &config, skipped(&["c2"]))
    );
    assert!(
        !links
            .memo
            .record_skipped("configmaps", &config, skipped(&["c2"])),
        "same again"
    );
    let web = UpstreamKey::new("lc-a", "demo", "web");
    let view = links
        .dependencies_of("deployments.apps", &web, Some("https://shard-1"))
        .expect("lists dependencies");
    let state = &view.resources[&(String::new(), "configmaps".to_string())].objects["app-config"];
    assert_eq!(state.skipped, skipped(&["c2"]));
    // No longer skipped: told again, and the view follows.
    assert!(
        links
            .memo
            .record_skipped("configmaps", &config, skipped(&[]))
    );
    assert!(links.memo.skipped("configmaps", &config).is_empty());
}
