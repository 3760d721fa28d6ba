"""Structured logging through the host's `log` import: `log.info("placed", target="eu-1")`.
The host keeps 32 lines of 2 KiB per call. What `print` writes to standard output (or
standard error) also becomes log lines of the plugin, after the call, under the same
budget (info, or warn for standard error), without levels or fields."""

from wit_world.imports import log as _wit


def _emit(level, message: str, fields) -> None:
    _wit.log(level, str(message), [(str(k), str(v)) for k, v in sorted(fields.items())])


def trace(message: str, **fields) -> None:
    _emit(_wit.Level.TRACE, message, fields)


def debug(message: str, **fields) -> None:
    _emit(_wit.Level.DEBUG, message, fields)


def info(message: str, **fields) -> None:
    _emit(_wit.Level.INFO, message, fields)


def warn(message: str, **fields) -> None:
    _emit(_wit.Level.WARN, message, fields)


def error(message: str, **fields) -> None:
    _emit(_wit.Level.ERROR, message, fields)
