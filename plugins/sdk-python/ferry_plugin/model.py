"""The typed context a hook receives: plain Python objects built from the WIT records, with
the lookups a plugin needs (`target.label("region")`, `context.workspace.label("tier")`)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Target:
    """A target cluster as the operator configured it."""

    name: str
    labels: Dict[str, str] = field(default_factory=dict)

    def label(self, key: str) -> Optional[str]:
        return self.labels.get(key)


@dataclass(frozen=True)
class Workspace:
    """The kcp workspace an object lives in. `path` is None when unknown (the tenant did not
    accept the permission claim); labels and annotations hold only opted-in keys."""

    logical_cluster: str
    path: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    annotations: Dict[str, str] = field(default_factory=dict)

    def label(self, key: str) -> Optional[str]:
        return self.labels.get(key)

    def annotation(self, key: str) -> Optional[str]:
        return self.annotations.get(key)


@dataclass(frozen=True)
class Context:
    """Where the upstream object comes from and where its copies go."""

    workspace: Workspace
    namespace: str
    downstream_namespace: str


@dataclass(frozen=True)
class Downstream:
    """One target's live copy (a dict), or None when it does not exist yet."""

    target: Target
    object: Optional[Dict[str, Any]]


@dataclass(frozen=True)
class ObjectRef:
    """A reference from `dependencies`: `ObjectRef.required("", "configmaps", name)`."""

    group: str
    resource: str
    name: str
    optional: bool = False

    @staticmethod
    def required(group: str, resource: str, name: str) -> "ObjectRef":
        return ObjectRef(group, resource, name, False)

    @staticmethod
    def optional_ref(group: str, resource: str, name: str) -> "ObjectRef":
        return ObjectRef(group, resource, name, True)


class Skip:
    """`transform_all` outcome: no copy on this target."""


SKIP = Skip()
