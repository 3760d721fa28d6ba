//! Placement by workspace: rules in the configuration that bound an object's targets by the
//! workspace it lives in (its path, its opted-in labels).

use serde::Deserialize;

use crate::selector::Selector;
use crate::workspace_pattern::WorkspacePattern;

/// `{workspace: "root:org-eu:**", workspaceLabels: "tier=gold", targets: "region=eu"}`: an
/// object whose workspace matches `workspace` and `workspaceLabels` (each optional, at least
/// one given) may only go to targets matching `targets`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Pattern over the workspace path.
    #[serde(default)]
    pub workspace: Option<WorkspacePattern>,
    /// Selector over the workspace's opted-in labels.
    #[serde(default)]
    pub workspace_labels: Option<Selector>,
    /// Selector over the targets' labels.
    pub targets: Selector,
}

impl Rule {
    fn matches<'a>(&self, path: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.workspace.as_ref().is_none_or(|p| p.matches(path))
            && self
                .workspace_labels
                .as_ref()
                .is_none_or(|s| s.matches(label))
    }
}

/// What the workspace says about an object's targets.
#[derive(Debug, PartialEq)]
pub enum Bound<'a> {
    /// No rule is configured, or none matches: the workspace does not restrict placement.
    Free,
    /// Only targets matching this selector.
    Within(&'a Selector),
}

/// The bound the first matching rule puts on an object in the workspace at `path` (`None`:
/// unknown, because the tenant did not accept the permission claim or Ferry has not read the
/// workspace yet) with opted-in labels `label`.
///
/// With an unknown path no rule can be judged: the bound is `unknown` when configured, else
/// an error. Falling through to the default would send a workspace the rules keep in one
/// region to wherever the default points, so an operator has to choose that fallback.
pub fn bound<'a, 'l>(
    rules: &'a [Rule],
    unknown: Option<&'a Selector>,
    path: Option<&str>,
    label: impl Fn(&str) -> Option<&'l str> + Copy,
) -> Result<Bound<'a>, String> {
    if rules.is_empty() {
        return Ok(Bound::Free);
    }
    let Some(path) = path else {
        return unknown.map(Bound::Within).ok_or_else(|| {
            "the workspace path is unknown (the tenant has not accepted the permission claim on \
             logicalclusters, or Ferry has not read it yet), so no `workspaces` rule can be \
             judged; set `unknownWorkspace` to place such objects"
                .to_owned()
        });
    };
    Ok(rules
        .iter()
        .find(|rule| rule.matches(path, label))
        .map_or(Bound::Free, |rule| Bound::Within(&rule.targets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<Rule> {
        ferry_plugin_sdk::serde_json::from_str(yaml).expect(yaml)
    }

    fn no_labels(_: &str) -> Option<&'static str> {
        None
    }

    fn selector(text: &str) -> Selector {
        Selector::parse(text).expect(text)
    }

    #[test]
    fn the_first_rule_matching_the_path_bounds_the_targets() {
        let rules = rules(
            r#"[{"workspace": "root:org-eu:**", "targets": "region=eu"},
                {"workspace": "root:*", "targets": "region=us"}]"#,
        );
        let eu = selector("region=eu");
        let us = selector("region=us");
        let bound_of = |path| bound(&rules, None, Some(path), no_labels).expect(path);
        assert_eq!(bound_of("root:org-eu:team-a"), Bound::Within(&eu));
        assert_eq!(bound_of("root:org-eu"), Bound::Within(&eu));
        assert_eq!(bound_of("root:org-us"), Bound::Within(&us));
        assert_eq!(bound_of("root:org-us:team-b"), Bound::Free);
    }

    #[test]
    fn a_rule_can_match_the_workspace_labels_alone_or_with_the_path() {
        let rules = rules(
            r#"[{"workspace": "root:**", "workspaceLabels": "tier=gold", "targets": "tier=gold"},
                {"workspaceLabels": "env in (prod)", "targets": "env=prod"}]"#,
        );
        let gold = selector("tier=gold");
        let prod = selector("env=prod");
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        };
        assert_eq!(
            bound(&rules, None, Some("root:a"), labels(&[("tier", "gold")])),
            Ok(Bound::Within(&gold))
        );
        assert_eq!(
            bound(&rules, None, Some("root:a"), labels(&[("env", "prod")])),
            Ok(Bound::Within(&prod))
        );
        assert_eq!(
            bound(&rules, None, Some("root:a"), labels(&[("env", "dev")])),
            Ok(Bound::Free)
        );
    }

    #[test]
    fn an_unknown_path_uses_the_configured_fallback_or_fails_never_free() {
        let rules = rules(r#"[{"workspace": "root:org-eu:**", "targets": "region=eu"}]"#);
        let err = bound(&rules, None, None, no_labels).expect_err("no fallback");
        assert!(err.contains("unknownWorkspace"), "{err}");
        let fallback = selector("region=eu");
        assert_eq!(
            bound(&rules, Some(&fallback), None, no_labels),
            Ok(Bound::Within(&fallback))
        );
    }

    #[test]
    fn without_rules_the_workspace_does_not_matter() {
        assert_eq!(bound(&[], None, None, no_labels), Ok(Bound::Free));
        assert_eq!(bound(&[], None, Some("root:x"), no_labels), Ok(Bound::Free));
    }
}
