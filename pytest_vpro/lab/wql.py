"""A subset of WQL, as the lab's WinRM/WMI hosts answer it: ``SELECT props|* FROM Class [WHERE ...]`` with
``= <> != < > <= >=``, ``LIKE``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT`` and parentheses (the queries the
probes send)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)



class WqlError(ValueError):
    """The query is outside the supported subset."""


_WQL_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*'|\"[^\"]*\")|(?P<num>-?\d+(?:\.\d+)?)|"
                        r"(?P<op><>|!=|<=|>=|=|<|>)|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class WqlQuery:
    class_name: str
    properties: list[str] | None  # None: *
    where: Callable[[Mapping[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _WQL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WqlError(f"unexpected character at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _like(pattern: str) -> re.Pattern[str]:
    rx, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            rx += ".*"
        elif ch == "_":
            rx += "."
        elif ch == "[":
            end = pattern.find("]", i)
            if end < 0:
                raise WqlError("unclosed [ in LIKE pattern")
            body = pattern[i + 1:end]
            rx += "[" + ("^" + re.escape(body[1:]) if body.startswith("^") else re.escape(body)) + "]"
            i = end
        else:
            rx += re.escape(ch)
        i += 1
    return re.compile(rx, re.I | re.S)


def _compare(value: Any, op: str, literal: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_compare(v, op, literal) for v in value)
    if value is None or literal is None:
        return False
    if isinstance(literal, bool):
        left: Any = str(value).lower() in ("true", "1")
        right: Any = literal
    elif isinstance(literal, float):
        try:
            left, right = float(value), literal
        except (TypeError, ValueError):
            return False
    else:
        left, right = str(value).lower(), str(literal).lower()
    return {"=": left == right, "<>": left != right, "!=": left != right, "<": left < right, ">": left > right,
            "<=": left <= right, ">=": left >= right}[op]


class _WqlParser:
    def __init__(self, text: str):
        self.toks, self.i = _tokens(text), 0

    def peek(self, word: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        kind, val = self.toks[self.i]
        return word is None or val.upper() == word

    def take(self, word: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (word is not None and self.toks[self.i][1].upper() != word):
            raise WqlError(f"expected {word or 'more'}")
        self.i += 1
        return self.toks[self.i - 1]

    def query(self) -> WqlQuery:
        self.take("SELECT")
        props: list[str] | None = None
        if self.peek("*"):
            self.take("*")
        else:
            props = [self.ident()]
            while self.peek(","):
                self.take(",")
                props.append(self.ident())
        self.take("FROM")
        cls = self.ident()
        where: Callable[[Mapping[str, Any]], bool] = lambda inst: True  # noqa: E731
        if self.peek("WHERE"):
            self.take("WHERE")
            where = self.expr()
        if self.i != len(self.toks):
            raise WqlError(f"unexpected {self.toks[self.i][1]!r}")
        return WqlQuery(cls, props, where)

    def ident(self) -> str:
        kind, val = self.take()
        if kind != "word":
            raise WqlError(f"expected a name, found {val!r}")
        return val

    def expr(self):
        left = self.term()
        while self.peek("OR"):
            self.take("OR")
            a, b = left, self.term()
            left = lambda inst, a=a, b=b: a(inst) or b(inst)  # noqa: E731
        return left

    def term(self):
        left = self.factor()
        while self.peek("AND"):
            self.take("AND")
            a, b = left, self.factor()
            left = lambda inst, a=a, b=b: a(inst) and b(inst)  # noqa: E731
        return left

    def factor(self):
        if self.peek("NOT"):
            self.take("NOT")
            inner = self.factor()
            return lambda inst: not inner(inst)
        if self.peek("("):
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        return self.comparison()

    def literal(self) -> Any:
        kind, val = self.take()
        if kind == "str":  # a backslash escapes the next character, as in WQL ('C:\\WINDOWS')
            body = val[1:-1].replace("''", "'") if val[0] == "'" else val[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if kind == "num":
            return float(val)
        if kind == "word" and val.upper() in ("TRUE", "FALSE"):
            return val.upper() == "TRUE"
        if kind == "word" and val.upper() == "NULL":
            return None
        raise WqlError(f"expected a value, found {val!r}")

    def comparison(self):
        prop = self.ident()

        def value(inst: Mapping[str, Any]) -> Any:
            return next((v for k, v in inst.items() if k.lower() == prop.lower()), None)

        if self.peek("IS"):
            self.take("IS")
            negate = self.peek("NOT") and bool(self.take("NOT"))
            self.take("NULL")
            return lambda inst: (value(inst) is None) != negate
        if self.peek("LIKE"):
            self.take("LIKE")
            lit = self.literal()
            if not isinstance(lit, str):
                raise WqlError("LIKE needs a string")
            rx = _like(lit)
            return lambda inst: any(rx.fullmatch(str(v)) for v in (value(inst) if isinstance(value(inst), list)
                                                                    else [value(inst)]) if v is not None)
        kind, op = self.take()
        if kind != "op":
            raise WqlError(f"expected a comparison operator, found {op!r}")
        lit = self.literal()
        return lambda inst: _compare(value(inst), op, lit)


def parse_wql(text: str) -> WqlQuery:
    """Parse the supported WQL subset; raise :class:`WqlError` otherwise."""
    return _WqlParser(text).query()
