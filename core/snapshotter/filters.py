"""containerd's filter language, as ``List`` (``ctr snapshots ls``, containerd's garbage
collector) sends it: ``labels."containerd.io/snapshot.ref"==sha256:...,parent==x``.

A request carries a list of filters, ORed; a filter is selectors joined by ``,``, ANDed. A
selector is a field path (``kind``, ``name``, ``parent``, ``labels.<key>``; a field may be a
double-quoted string) and, optionally, an operator (``==``, ``!=``, ``~=``, a regular
expression) and a value: bare (anything up to a comma or a space, dots and colons included),
double-quoted, or for ``~=`` also quoted as ``/.../`` or ``|...|``. A bare field path tests
for presence. The rules, and their odd corners, are those of containerd's ``filters``
package: a bare value right after an operator may not start with ``.`` or ``,``; ``!=`` holds
for a missing field (its value is the empty string); a map with no labels has no
``labels`` field at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, NoReturn

# Returns (value, present) for a field path.
Fields = Callable[[list[str]], tuple[str, bool]]

_QUOTES = '"/|'
_OPERATOR_CHARS = "=!~"
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\"}


class FilterError(ValueError):
    """The filter cannot be parsed: containerd's InvalidArgument."""


class Selector(NamedTuple):
    path: list[str]
    operator: str  # "", "==", "!=", "~="
    value: str
    pattern: re.Pattern[str] | None

    def matches(self, fields: Fields) -> bool:
        value, present = fields(self.path)
        if self.operator == "":
            return present
        if self.operator == "==":
            return present and value == self.value
        if self.operator == "!=":
            return value != self.value
        assert self.pattern is not None
        return self.pattern.search(value) is not None


def parse(filters: Iterable[str]) -> list[list[Selector]]:
    """The filters of one request, each parsed into its selectors; [] matches everything."""
    return [_Parser(text).selectors() for text in filters if text]


def matches(parsed: list[list[Selector]], fields: Fields) -> bool:
    return not parsed or any(all(s.matches(fields) for s in selectors) for selectors in parsed)


def snapshot_fields(kind: str, name: str, parent: str, labels: Mapping[str, str]) -> Fields:
    """The fields of one snapshot, as containerd's own metadata store adapts them."""

    def fields(path: list[str]) -> tuple[str, bool]:
        if path == ["kind"]:
            return kind, True
        if path == ["name"]:
            return name, True
        if path == ["parent"]:
            return parent, True
        if path[0] == "labels" and labels:
            key = ".".join(path[1:])
            return labels.get(key, ""), key in labels
        return "", False

    return fields


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def selectors(self) -> list[Selector]:
        found = [self._selector()]
        while self._skip_spaces() < len(self.text):
            if self.text[self.pos] != ",":
                self._fail(f"unexpected input {self.text[self.pos]!r}")
            self.pos += 1
            found.append(self._selector())
        return found

    def _selector(self) -> Selector:
        path = [self._field()]
        while self._skip_spaces() < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            path.append(self._field())
        if self._skip_spaces() >= len(self.text) or self.text[self.pos] == ",":
            return Selector(path, "", "", None)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _OPERATOR_CHARS:
            self.pos += 1
        operator = self.text[start:self.pos]
        if operator not in ("==", "!=", "~="):
            self._fail('expected an operator ("=="|"!="|"~=")' if not operator
                       else f"unsupported operator {operator!r}")
        value = self._value(alternative_quotes=operator == "~=")
        pattern = None
        if operator == "~=":
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise FilterError(f"filter {self.text!r}: bad regular expression {value!r}: "
                                  f"{exc}") from None
        return Selector(path, operator, value, pattern)

    def _field(self) -> str:
        if self._skip_spaces() >= len(self.text):
            self._fail("expected a field")
        if self.text[self.pos] == '"':
            return self._quoted()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isascii() and (
                self.text[self.pos].isalnum() or self.text[self.pos] == "_")):
            self.pos += 1
        if start == self.pos:
            self._fail("expected a field or a quoted string")
        return self.text[start:self.pos]

    def _value(self, alternative_quotes: bool) -> str:
        if self._skip_spaces() >= len(self.text):
            self._fail("expected a value")
        first = self.text[self.pos]
        if first in _QUOTES:
            if first != '"' and not alternative_quotes:
                self._fail(f"{first}...{first} quotes only a regular expression")
            return self._quoted()
        if first in ",.":
            self._fail("expected a value")
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] != "," and (
                self.text[self.pos].isprintable() and not self.text[self.pos].isspace()):
            self.pos += 1
        return self.text[start:self.pos]

    def _quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                self._fail("quoted string not terminated")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char != "\\":
                out.append(char)
                continue
            out.append(self._escape(quote))

    def _escape(self, quote: str) -> str:
        if self.pos >= len(self.text):
            self._fail("quoted string not terminated")
        char = self.text[self.pos]
        self.pos += 1
        if char in _ESCAPES:
            return _ESCAPES[char]
        if char == quote:
            return quote
        for lead, base, digits in (("x", 16, 2), ("u", 16, 4), ("U", 16, 8)):
            if char == lead:
                return self._code(self.pos, digits, base)
        if char in "01234567":
            return self._code(self.pos - 1, 3, 8)
        self._fail(f"illegal escape \\{char}")

    def _code(self, start: int, digits: int, base: int) -> str:
        text = self.text[start:start + digits]
        try:
            if len(text) != digits:
                raise ValueError(text)
            code = chr(int(text, base))
        except (ValueError, OverflowError):
            self._fail(f"illegal numeric escape {text!r}")
        self.pos = start + digits
        return code

    def _skip_spaces(self) -> int:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos

    def _fail(self, message: str) -> NoReturn:
        raise FilterError(f"filter {self.text!r}, at {self.pos}: {message}")
