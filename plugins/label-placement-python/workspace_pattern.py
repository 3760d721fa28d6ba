"""Workspace path patterns: `:`-separated names, `*` inside a name matches any characters of
one name, a `**` name matches any number of names (none included). A port of
plugins/label-placement/src/workspace_pattern.rs."""

import re

_NAME = re.compile(r"^[a-z0-9\-*]+$")


class PatternError(ValueError):
    pass


class WorkspacePattern:
    def __init__(self, text: str):
        def invalid(why):
            return PatternError(f"workspace pattern {text!r}: {why}")

        segments = []
        for segment in text.split(":"):
            if segment == "":
                raise invalid("empty name between ':'")
            if segment == "**":
                segments.append(None)  # any depth
            elif "**" in segment:
                raise invalid("`**` must be a whole name")
            elif _NAME.match(segment):
                segments.append(segment)
            else:
                raise invalid("names are lower-case letters, digits and '-' (with '*' as a wildcard)")
        self.text = text
        self.segments = segments

    def matches(self, path: str) -> bool:
        return _matches_from(self.segments, path.split(":"))


def _matches_from(segments, names) -> bool:
    if not segments:
        return not names
    first, rest = segments[0], segments[1:]
    if first is None:
        return any(_matches_from(rest, names[skip:]) for skip in range(len(names) + 1))
    return bool(names) and _glob(first, names[0]) and _matches_from(rest, names[1:])


def _glob(pattern: str, name: str) -> bool:
    if not pattern:
        return not name
    if pattern[0] == "*":
        return any(_glob(pattern[1:], name[skip:]) for skip in range(len(name) + 1))
    return bool(name) and name[0] == pattern[0] and _glob(pattern[1:], name[1:])
