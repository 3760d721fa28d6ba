"""`label-placement` in Python: an object goes to the targets whose labels match a
Kubernetes label selector, from the object's annotation `sync.ferry.dev/placement`, else
the configured `default`; workspace rules bound where a workspace's objects may go, and
`count`/`spreadBy` pick a stable subset by rendezvous hashing. The same behaviour and golden
cases as the Rust plugin (plugins/label-placement, whose docs explain each choice)."""

from ferry_plugin import Failed, InvalidConfig, InvalidInput, Plugin, export

import workspace_rules
from selector import Selector

ANNOTATION = "sync.ferry.dev/placement"
KEYS = {"default", "count", "spreadBy", "workspaces", "unknownWorkspace"}
MASK = (1 << 64) - 1


class Settings:
    """The configuration, parsed and checked."""

    def __init__(self, raw):
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise InvalidConfig("the configuration must be a mapping")
        unknown = set(raw) - KEYS
        if unknown:
            raise InvalidConfig(f"unknown field `{sorted(unknown)[0]}`")
        self.default = raw.get("default")
        self.count = raw.get("count")
        self.spread_by = raw.get("spreadBy")
        if self.default is not None:
            try:
                Selector.parse(self.default)
            except ValueError as e:
                raise InvalidConfig(f"`default` selector: {e}")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 0):
            raise InvalidConfig("`count` must be a whole number")
        if self.count == 0:
            raise InvalidConfig("`count` must be at least 1")
        if self.spread_by is not None and self.count is None:
            raise InvalidConfig("`spreadBy` needs `count`")
        self.rules = [workspace_rules.Rule(r, i) for i, r in enumerate(raw.get("workspaces") or [])]
        unknown_workspace = raw.get("unknownWorkspace")
        try:
            self.unknown = None if unknown_workspace is None else Selector.parse(unknown_workspace)
        except ValueError as e:
            raise InvalidConfig(f"`unknownWorkspace` selector: {e}")
        if self.unknown is not None and not self.rules:
            raise InvalidConfig("`unknownWorkspace` needs `workspaces`")


class LabelPlacement(Plugin):
    def validate(self, config):
        Settings(config)

    def place(self, config, context, obj, targets):
        settings = Settings(config)
        text = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
        annotation = None
        if isinstance(text, str):
            try:
                annotation = Selector.parse(text)
            except ValueError as e:
                raise InvalidInput(f"annotation {ANNOTATION}={text!r}: {e}")
        workspace = context.workspace
        try:
            bound = workspace_rules.bound(settings.rules, settings.unknown, workspace.path, workspace.label)
        except ValueError as e:
            raise Failed(str(e))
        if bound is workspace_rules.FREE:
            chosen = annotation or (None if settings.default is None else Selector.parse(settings.default))
            if chosen is None:
                # No annotation, rule or default: nowhere, never everywhere.
                return []
            selectors = [chosen]
        else:
            selectors = [bound] + ([annotation] if annotation else [])
        matching = [t for t in targets if all(s.matches(t.label) for s in selectors)]
        if settings.count is None:
            return [t.name for t in matching]
        return choose(context, obj, matching, settings.count, settings.spread_by)


def choose(context, obj, candidates, count, spread_by):
    name = (obj.get("metadata") or {}).get("name") or ""
    identity = f"{context.workspace.logical_cluster}/{context.namespace}/{name}"
    candidates = sorted(candidates, key=lambda t: (-weight(identity, t.name), t.name))
    chosen = []
    if spread_by is not None:
        seen = []
        for t in candidates:
            value = t.label(spread_by)
            if len(chosen) < count and value not in seen:
                seen.append(value)
                chosen.append(t)
    for t in candidates:
        if len(chosen) < count and all(c.name != t.name for c in chosen):
            chosen.append(t)
    return sorted(t.name for t in chosen)


def weight(identity: str, target: str) -> int:
    """FNV-1a over identity, a zero byte and the target name, then one xorshift-multiply
    round: the same 64-bit weights as the Rust plugin, so both place identically."""
    h = 0xCBF29CE484222325
    for byte in identity.encode() + b"\0" + target.encode():
        h ^= byte
        h = (h * 0x100000001B3) & MASK
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK
    return h ^ (h >> 33)


Config, Placement, Transform, Status, Dependencies = export(LabelPlacement())
