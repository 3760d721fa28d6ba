"""Structured logging through the host's `log` import: `log.info("placed", target="eu-1")`.
The host keeps 32 lines of 2 KiB per call. `print` goes nowhere: standard output is
discarded by Ferry."""

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
