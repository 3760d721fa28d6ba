"""The `Plugin` base class: override the hooks you implement; the others answer
`Unsupported`. Every hook gets the parsed configuration first (None when none was given)."""

from typing import Any, Dict, List, Optional, Union

from .errors import InvalidConfig, PluginError, Unsupported
from .model import SKIP, Context, Downstream, ObjectRef, Skip, Target

Json = Dict[str, Any]


class Plugin:
    def validate(self, config: Any) -> None:
        """Checks the configuration once per instance, before any hook. The default refuses
        any configuration: override it in a plugin that takes one."""
        if config is not None:
            raise InvalidConfig("this plugin takes no configuration")

    def place(self, config: Any, context: Context, obj: Json, targets: List[Target]) -> List[str]:
        raise Unsupported("this plugin does not place objects")

    def transform(self, config: Any, context: Context, obj: Json, target: Target) -> Optional[Json]:
        """One target: the object to apply there, or None for no copy."""
        raise Unsupported("this plugin does not transform objects")

    def transform_all(
        self, config: Any, context: Context, obj: Json, targets: List[Target]
    ) -> Dict[str, Union[Json, Skip, PluginError]]:
        """Every placed target at once: target name -> object, `SKIP` or an error for that
        target alone. The default calls `transform` per target on its own copy; an
        `Unsupported` there answers for every target. Override it when the work does not
        depend on the target (do it once)."""
        import copy

        outcomes: Dict[str, Union[Json, Skip, PluginError]] = {}
        for target in targets:
            try:
                result = self.transform(config, context, copy.deepcopy(obj), target)
            except Unsupported:
                raise
            except PluginError as e:
                outcomes[target.name] = e
                continue
            outcomes[target.name] = SKIP if result is None else result
        return outcomes

    def aggregate_status(
        self, config: Any, context: Context, obj: Json, downstream: List[Downstream]
    ) -> Optional[Json]:
        raise Unsupported("this plugin does not aggregate status")

    def dependencies(self, config: Any, context: Context, obj: Json) -> List[ObjectRef]:
        raise Unsupported("this plugin lists no dependencies")
