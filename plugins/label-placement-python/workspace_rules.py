"""Workspace rules bound where a workspace's objects may go; the first matching rule wins. A
port of plugins/label-placement/src/workspace_rules.rs."""

from selector import Selector
from workspace_pattern import WorkspacePattern

FREE = None


class Rule:
    def __init__(self, raw, index: int):
        from ferry_plugin import InvalidConfig

        if not isinstance(raw, dict):
            raise InvalidConfig(f"`workspaces[{index}]` must be a mapping")
        unknown = set(raw) - {"workspace", "workspaceLabels", "targets"}
        if unknown:
            raise InvalidConfig(f"`workspaces[{index}]`: unknown field `{sorted(unknown)[0]}`")
        if "targets" not in raw:
            raise InvalidConfig(f"`workspaces[{index}]`: missing field `targets`")
        try:
            self.workspace = None if raw.get("workspace") is None else WorkspacePattern(raw["workspace"])
            labels = raw.get("workspaceLabels")
            self.workspace_labels = None if labels is None else Selector.parse(labels)
            self.targets = Selector.parse(raw["targets"])
        except ValueError as e:
            raise InvalidConfig(f"`workspaces[{index}]`: {e}")
        if self.workspace is None and self.workspace_labels is None:
            raise InvalidConfig(f"`workspaces[{index}]` needs `workspace` or `workspaceLabels`")

    def matches(self, path: str, label) -> bool:
        return (self.workspace is None or self.workspace.matches(path)) and (
            self.workspace_labels is None or self.workspace_labels.matches(label)
        )


def bound(rules, unknown, path, label):
    """The selector the object's workspace is bound to, FREE when no rule applies. Raises
    ValueError when the path is unknown and there is no `unknownWorkspace` bound."""
    if not rules:
        return FREE
    if path is None:
        if unknown is None:
            raise ValueError(
                "the workspace path is unknown (the tenant has not accepted the permission claim "
                "on logicalclusters, or Ferry has not read it yet), so no `workspaces` rule can be "
                "judged; set `unknownWorkspace` to place such objects"
            )
        return unknown
    for rule in rules:
        if rule.matches(path, label):
            return rule.targets
    return FREE
