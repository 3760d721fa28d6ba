"""Errors a hook raises: each becomes one case of the WIT `plugin-error` variant, with its
message shown to the user. Raise these, never let another exception escape: the export glue
turns any other exception into `Failed`, naming its type."""


class PluginError(Exception):
    """Base of the four kinds. `kind` is the WIT case name."""

    kind = "failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidConfig(PluginError):
    """The plugin's configuration is unusable; name the offending key."""

    kind = "invalid-config"


class InvalidInput(PluginError):
    """The object is not something this plugin can handle; say what and where."""

    kind = "invalid-input"


class Unsupported(PluginError):
    """The hook is exported but not implemented."""

    kind = "unsupported"


class Failed(PluginError):
    """Anything else that went wrong inside the plugin."""

    kind = "failed"
