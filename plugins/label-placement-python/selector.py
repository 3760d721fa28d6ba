"""Kubernetes label selector strings (`region=eu,tier!=gpu,env in (a,b),!legacy,zone`), the
syntax `kubectl -l` accepts. The empty selector matches everything. A port of
plugins/label-placement/src/selector.rs; the golden cases keep the two in step."""

import re

_KEY = re.compile(r"^[A-Za-z0-9\-_./]+$")
_VALUE = re.compile(r"^[A-Za-z0-9\-_.]*$")


class SelectorError(ValueError):
    pass


class Selector:
    """A parsed selector: every requirement (op, key, values) must hold."""

    def __init__(self, requirements):
        self.requirements = requirements

    @staticmethod
    def parse(text: str) -> "Selector":
        requirements = []
        for term in _split_terms(text):
            term = term.strip()
            if not term:
                if not text.strip():
                    continue
                raise SelectorError(f"empty requirement in {text!r}")
            requirements.append(_parse_term(term))
        return Selector(requirements)

    def matches(self, label) -> bool:
        """Whether the labels looked up through `label(key) -> value or None` satisfy it."""
        for op, key, values in self.requirements:
            have = label(key)
            if op == "=" and have != values[0]:
                return False
            if op == "!=" and have == values[0]:
                return False
            if op == "in" and have not in values:
                return False
            if op == "notin" and have is not None and have in values:
                return False
            if op == "exists" and have is None:
                return False
            if op == "!" and have is not None:
                return False
        return True


def _split_terms(text: str):
    terms, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
        if depth not in (0, 1):
            raise SelectorError(f"unbalanced parentheses in {text!r}")
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in {text!r}")
    terms.append(text[start:])
    return terms


def _parse_term(term: str):
    if term.startswith("!"):
        return ("!", _key(term[1:].strip()), [])
    if "!=" in term:
        k, v = term.split("!=", 1)
        return ("!=", _key(k), [_value(v)])
    if "==" in term or "=" in term:
        k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
        return ("=", _key(k), [_value(v)])
    words = term.split(None, 1)
    key = _key(words[0] if words else "")
    if len(words) == 1:
        return ("exists", key, [])
    rest = words[1].strip()
    if rest.startswith("notin"):
        op, values = "notin", rest[len("notin"):]
    elif rest.startswith("in"):
        op, values = "in", rest[len("in"):]
    else:
        raise SelectorError(f"expected `in` or `notin` in {term!r}")
    values = values.strip()
    if not (values.startswith("(") and values.endswith(")")):
        raise SelectorError(f"expected a (value, ...) set in {term!r}")
    return (op, key, [_value(v) for v in values[1:-1].split(",")])


def _key(text: str) -> str:
    key = text.strip()
    if not key or len(key) > 317 or not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _value(text: str) -> str:
    value = text.strip()
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r}")
    return value
