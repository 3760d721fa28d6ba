"""Ferry's guest SDK for Python plugins (contract `ferry:sync@0.2.0`, world `plugin`).

    from ferry_plugin import Plugin, InvalidInput, export, log

    class OnlyEu(Plugin):
        def place(self, config, context, obj, targets):
            return [t.name for t in targets if t.label("region") == "eu"]

    Config, Placement, Transform, Status, Dependencies = export(OnlyEu())

Build with `ferry plugin build <dir>` (componentize-py); see docs/plugins.md."""

from . import log
from .errors import Failed, InvalidConfig, InvalidInput, PluginError, Unsupported
from .exports import export
from .model import SKIP, Context, Downstream, ObjectRef, Skip, Target, Workspace
from .plugin import Plugin

__all__ = [
    "Context",
    "Downstream",
    "Failed",
    "InvalidConfig",
    "InvalidInput",
    "ObjectRef",
    "Plugin",
    "PluginError",
    "SKIP",
    "Skip",
    "Target",
    "Unsupported",
    "Workspace",
    "export",
    "log",
]
