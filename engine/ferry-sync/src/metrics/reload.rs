//! Plugin hot reload (`ferry run` swapping in a changed component): which component runs
//! for each plugin reference, by digest, and how each reload attempt ended.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `plugin`, `resource`, `hook`, `digest`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    plugin: String,
    resource: String,
    hook: String,
    digest: String,
}

/// `plugin`, `digest`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    plugin: String,
    digest: String,
    outcome: String,
}

/// The reload metrics, registered with the others.
#[derive(Clone, Default)]
pub(super) struct ReloadMetrics {
    components: Family<ComponentLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
}

impl ReloadMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "ferry_plugin_component_info",
            "1 for the component (by SHA-256 digest) that answers a plugin reference now, by \
             plugin, resource and hook; a hot reload moves the 1 to the new digest",
            self.components.clone(),
        );
        registry.register(
            "ferry_plugin_reloads",
            "Hot reload attempts of a changed plugin file, by plugin, the new component's \
             digest and outcome (loaded, or why it was refused: unreadable, invalid-component, \
             invalid-config, missing-hook, cases-failed)",
            self.reloads.clone(),
        );
    }

    pub(super) fn component(
        &self,
        plugin: &str,
        resource: &str,
        hook: &str,
        digest: &str,
        old: Option<&str>,
    ) {
        let labels = |digest: &str| ComponentLabels {
            plugin: plugin.into(),
            resource: resource.into(),
            hook: hook.into(),
            digest: digest.into(),
        };
        if let Some(old) = old.filter(|old| *old != digest) {
            self.components.remove(&labels(old));
        }
        self.components.get_or_create(&labels(digest)).set(1);
    }

    pub(super) fn reload(&self, plugin: &str, digest: &str, outcome: &str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                plugin: plugin.into(),
                digest: digest.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}
