"""Glue between a `Plugin` and the bindings componentize-py generates for the
`ferry:sync@0.2.0` world `plugin`: JSON text in and out, WIT records to `model` types, and
every error to a `plugin-error` case. A plugin module ends with

    Config, Placement, Transform, Status, Dependencies = export(MyPlugin())

(componentize-py looks the export classes up by these names)."""

import json

from componentize_py_types import Err
from wit_world import exports as wit
from wit_world.exports import dependencies as wit_dependencies
from wit_world.exports import transform as wit_transform
from wit_world.imports import types as wit_types

from .errors import Failed, InvalidConfig, InvalidInput, PluginError
from .model import Context, Downstream, Skip, Target, Workspace

_ERRORS = {
    "invalid-config": wit_types.PluginError_InvalidConfig,
    "invalid-input": wit_types.PluginError_InvalidInput,
    "unsupported": wit_types.PluginError_Unsupported,
    "failed": wit_types.PluginError_Failed,
}


def _wit_error(error: PluginError):
    return _ERRORS.get(error.kind, wit_types.PluginError_Failed)(error.message)


def _guarded(call):
    """Runs a hook: a `PluginError` becomes its WIT case, any other exception `failed` with
    its type and message (an escaped exception would trap and lose its message)."""
    try:
        return call()
    except PluginError as e:
        raise Err(_wit_error(e))
    except Err:
        raise
    except Exception as e:  # noqa: BLE001 - every exception must cross as a plugin-error
        raise Err(wit_types.PluginError_Failed(f"{type(e).__name__}: {e}"))


def _target(t) -> Target:
    return Target(t.name, dict(t.labels))


def _context(c) -> Context:
    w = c.workspace
    return Context(
        Workspace(w.logical_cluster, w.path, dict(w.labels), dict(w.annotations)),
        c.namespace,
        c.downstream_namespace,
    )


def _parse(text: str, what: str):
    try:
        return json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"{what} is not JSON: {e}")


def _dump(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def export(plugin):
    """The five export classes for `plugin` (a `Plugin` instance)."""
    state = {"config": None}

    class Config(wit.Config):
        def configure(self, config: str) -> None:
            def run():
                try:
                    parsed = json.loads(config)
                except ValueError as e:
                    raise InvalidConfig(f"configuration is not JSON: {e}")
                plugin.validate(parsed)
                state["config"] = parsed

            _guarded(run)

    class Placement(wit.Placement):
        def place(self, context, object, targets):
            return _guarded(
                lambda: [
                    str(name)
                    for name in plugin.place(
                        state["config"],
                        _context(context),
                        _parse(object, "the object"),
                        [_target(t) for t in targets],
                    )
                ]
            )

    class Transform(wit.Transform):
        def transform(self, context, object, targets):
            def run():
                answers = plugin.transform_all(
                    state["config"],
                    _context(context),
                    _parse(object, "the object"),
                    [_target(t) for t in targets],
                )
                outcomes = []
                for name, answer in answers.items():
                    if isinstance(answer, Skip):
                        outcome = wit_transform.Outcome_Skip()
                    elif isinstance(answer, PluginError):
                        outcome = wit_transform.Outcome_Failed(_wit_error(answer))
                    else:
                        outcome = wit_transform.Outcome_Apply(_dump(answer))
                    outcomes.append(wit_transform.TargetOutcome(name, outcome))
                return outcomes

            return _guarded(run)

    class Status(wit.Status):
        def aggregate_status(self, context, object, downstream):
            def run():
                copies = [
                    Downstream(
                        _target(d.target),
                        None if d.object is None else _parse(d.object, "a downstream copy"),
                    )
                    for d in downstream
                ]
                status = plugin.aggregate_status(
                    state["config"], _context(context), _parse(object, "the object"), copies
                )
                return None if status is None else _dump(status)

            return _guarded(run)

    class Dependencies(wit.Dependencies):
        def dependencies(self, context, object):
            return _guarded(
                lambda: [
                    wit_dependencies.ObjectRef(r.group, r.resource, r.name, r.optional)
                    for r in plugin.dependencies(
                        state["config"], _context(context), _parse(object, "the object")
                    )
                ]
            )

    return Config, Placement, Transform, Status, Dependencies


__all__ = ["export", "Failed"]
