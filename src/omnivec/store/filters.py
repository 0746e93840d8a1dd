"""omnivec's filters (the SQL subset LanceDB takes) as Milvus boolean expressions.

A filter is written once, `year >= 2020 AND album = 'holiday'`, and must select the same rows on every store.
Two things differ in Milvus: its expression syntax (`==`, `in [..]`, double-quoted strings, `$meta["key"]` for
dynamic fields) and missing values. In SQL a comparison with NULL is unknown, and a row passes only when the
whole filter is true: `album != 'x'` skips rows without an album, and so does `NOT (album = 'x')`. In Milvus a
row whose dynamic field is missing passes `album != "x"`. The translator keeps SQL's three-valued logic: every
sub-filter becomes a pair of Milvus expressions, "certainly true" and "certainly false"; NOT swaps them, AND and
OR combine them by De Morgan, and the result is the "certainly true" one.

The parser is a small recursive descent over the grammar below; no installed library parses SQL into a tree
(pyparsing could, but the grammar would take as many lines as the parser), and the subset is tiny.

    filter    := or
    or        := and (OR and)*
    and       := not (AND not)*
    not       := NOT not | primary
    primary   := ( filter ) | TRUE | FALSE | field test | literal cmp field | array_has ( field , literal )
    test      := cmp literal | [NOT] IN ( literal, ... ) | IS [NOT] NULL | [NOT] LIKE 'prefix%'
               | [NOT] BETWEEN literal AND literal
    cmp       := = | == | != | <> | < | <= | > | >=
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable

from ..errors import ConfigError

KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "TRUE", "FALSE", "BETWEEN"}
NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
FLIPPED = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
  | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),\-])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str      # string | number | field | keyword | op | punct | end
    value: object
    at: int


class _Const:
    """TRUE and FALSE, kept symbolic so that `x AND TRUE` simplifies; rendered only if they survive."""

    def __init__(self, value: bool):
        self.value = value


TRUE, FALSE = _Const(True), _Const(False)


def to_milvus(where: str, *, fixed_fields: Iterable[str], primary_key: str) -> str:
    """The Milvus expression selecting the rows the SQL filter `where` selects.

    fixed_fields: schema fields every row has (never missing); any other name is a dynamic field, which a row
    may lack (SQL NULL). primary_key: used to spell constant TRUE/FALSE, which Milvus has no literal for."""
    parser = _Parser(where, set(fixed_fields))
    true, _ = parser.parse()
    return _render(true, primary_key)


def sql_quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_in(column: str, values) -> str:
    vals = list(values)
    if not vals:
        return "false"
    if isinstance(vals[0], str):
        return f"{column} IN ({', '.join(sql_quote(v) for v in vals)})"
    return f"{column} IN ({', '.join(str(int(v)) for v in vals)})"


def filter_fields(where: str) -> list[str]:
    """The field names a filter reads, in order of first use (a word before "(" is a function, not a field).
    Raises ConfigError naming the position of a character no filter may hold."""
    toks = _Parser(where, set()).toks
    fields: list[str] = []
    for tok, nxt in zip(toks, toks[1:]):
        if tok.kind == "field" and not (nxt.kind == "punct" and nxt.value == "(") and tok.value not in fields:
            fields.append(str(tok.value))
    return fields


def _render(e, pk: str) -> str:
    if e is TRUE:
        return f"not ({pk} in [])"
    if e is FALSE:
        return f"{pk} in []"
    return e


class _Parser:
    def __init__(self, text: str, fixed: set[str]):
        self.text, self.fixed = text, fixed
        self.toks = self._tokenise(text)
        self.i = 0

    # ---- tokens -------------------------------------------------------------------------------------------------
    def _tokenise(self, text: str) -> list[_Tok]:
        toks, at = [], 0
        while at < len(text):
            m = _TOKEN.match(text, at)
            if m is None:
                raise self._error(f"unexpected character {text[at]!r}", at)
            kind, value = m.lastgroup, m.group()
            if kind == "string":
                toks.append(_Tok("string", value[1:-1].replace("''", "'"), at))
            elif kind == "number":
                toks.append(_Tok("number", float(value) if any(c in value for c in ".eE") else int(value), at))
            elif kind == "quoted":
                name = value[1:-1].replace('""', '"') if value[0] == '"' else value[1:-1]
                toks.append(_Tok("field", name, at))
            elif kind == "word":
                up = value.upper()
                toks.append(_Tok("keyword", up, at) if up in KEYWORDS else _Tok("field", value, at))
            elif kind == "op":
                toks.append(_Tok("op", {"=": "==", "<>": "!="}.get(value, value), at))
            elif kind == "punct":
                toks.append(_Tok("punct", value, at))
            at = m.end()
        toks.append(_Tok("end", None, len(text)))
        return toks

    def _error(self, what: str, at: int | None = None) -> ConfigError:
        at = self.toks[self.i].at if at is None else at
        return ConfigError(f"filter {self.text!r}: {what} at position {at}")

    def _peek(self) -> _Tok:
        return self.toks[self.i]

    def _take(self, kind: str, value=None) -> _Tok | None:
        t = self.toks[self.i]
        if t.kind == kind and (value is None or t.value == value):
            self.i += 1
            return t
        return None

    def _expect(self, kind: str, value, what: str) -> _Tok:
        t = self._take(kind, value)
        if t is None:
            raise self._error(f"expected {what}")
        return t

    # ---- grammar: each rule returns (certainly true, certainly false) -------------------------------------------
    def parse(self):
        if self._peek().kind == "end":
            raise self._error("empty filter")
        pair = self._or()
        if self._peek().kind != "end":
            raise self._error(f"unexpected {self._peek().value!r}")
        return pair

    def _or(self):
        t, f = self._and()
        while self._take("keyword", "OR"):
            t2, f2 = self._and()
            t, f = _or(t, t2), _and(f, f2)
        return t, f

    def _and(self):
        t, f = self._not()
        while self._take("keyword", "AND"):
            t2, f2 = self._not()
            t, f = _and(t, t2), _or(f, f2)
        return t, f

    def _not(self):
        if self._take("keyword", "NOT"):
            t, f = self._not()
            return f, t
        return self._primary()

    def _primary(self):
        if self._take("punct", "("):
            pair = self._or()
            self._expect("punct", ")", "')'")
            return pair
        if self._take("keyword", "TRUE"):
            return TRUE, FALSE
        if self._take("keyword", "FALSE"):
            return FALSE, TRUE
        tok = self._peek()
        if tok.kind == "field":
            self.i += 1
            if self._take("punct", "("):
                return self._function(tok.value)
            return self._test(tok.value)
        if tok.kind in ("string", "number") or (tok.kind == "punct" and tok.value == "-"):
            value = self._literal()           # `2020 <= year`: the same test, read from the other side
            op = self._take("op")
            if op is None:
                raise self._error("expected a comparison after a value")
            field = self._take("field")
            if field is None:
                raise self._error("expected a field name (comparisons are between a field and a value)")
            return self._compare(field.value, FLIPPED[op.value], value)
        raise self._error(f"unexpected {tok.value!r}" if tok.kind != "end" else "unexpected end of filter")

    def _test(self, name: str):
        op = self._take("op")
        if op is not None:
            if self._peek().kind == "field":
                raise self._error("comparing two fields is not supported; compare a field with a value")
            return self._compare(name, op.value, self._literal())
        negate = self._take("keyword", "NOT") is not None
        if self._take("keyword", "IN"):
            pair = self._in(name)
        elif self._take("keyword", "LIKE"):
            pair = self._like(name)
        elif self._take("keyword", "BETWEEN"):
            low = self._literal()
            self._expect("keyword", "AND", "AND in BETWEEN")
            high = self._literal()
            lo_t, lo_f = self._compare(name, ">=", low)
            hi_t, hi_f = self._compare(name, "<=", high)
            pair = _and(lo_t, hi_t), _or(lo_f, hi_f)
        elif not negate and self._take("keyword", "IS"):
            is_not = self._take("keyword", "NOT") is not None
            self._expect("keyword", "NULL", "NULL after IS")
            present = TRUE if name in self.fixed else self._exists(name)
            absent = FALSE if name in self.fixed else f"not {present}"
            return (present, absent) if is_not else (absent, present)
        else:
            raise self._error(f"expected a comparison, IN, LIKE, BETWEEN or IS after {name!r}")
        return (pair[1], pair[0]) if negate else pair

    def _function(self, name: str):
        """array_has(list_field, value): whether a list field holds the value (lists are JSON in Milvus)."""
        if name.lower() not in ("array_has", "array_contains"):
            raise self._error(f"unknown function {name!r} (filters know array_has(field, value))")
        field = self._take("field")
        if field is None or field.value in self.fixed:
            raise self._error(f"{name} needs a list field first")
        self._expect("punct", ",", "',' in " + name)
        value = self._literal()
        self._expect("punct", ")", f"')' to close {name}")
        test = f"json_contains({self._field(field.value)}, {_value(value)})"
        return test, self._guard(field.value, f"not {test}")

    # ---- leaves -------------------------------------------------------------------------------------------------
    def _literal(self):
        neg = self._take("punct", "-") is not None
        t = self._peek()
        if t.kind == "number":
            self.i += 1
            return -t.value if neg else t.value
        if neg:
            raise self._error("expected a number after '-'")
        if t.kind == "string":
            self.i += 1
            return t.value
        if self._take("keyword", "TRUE"):
            return True
        if self._take("keyword", "FALSE"):
            return False
        raise self._error("expected a value (a 'string', a number, TRUE or FALSE)")

    def _field(self, name: str) -> str:
        if name in self.fixed:
            if not IDENTIFIER.match(name):
                raise self._error(f"field {name!r} is not a plain name")
            return name
        return f"$meta[{json.dumps(name, ensure_ascii=False)}]"

    def _exists(self, name: str) -> str:
        return f"(exists {self._field(name)})"   # parenthesised: `exists` binds looser than `and` in Milvus

    def _guard(self, name: str, expr: str) -> str:
        """A test that a missing field would pass in Milvus, restricted to rows that have the field."""
        return expr if name in self.fixed else f"({self._exists(name)} and {expr})"

    def _compare(self, name: str, op: str, value):
        f = self._field(name)
        v = _value(value)
        # Milvus already fails every positive test on a missing field; only the `!=` side needs the guard.
        t = f"({f} {op} {v})" if op != "!=" else self._guard(name, f"{f} != {v}")
        neg = NEGATED[op]
        e = f"({f} {neg} {v})" if neg != "!=" else self._guard(name, f"{f} != {v}")
        return t, e

    def _in(self, name: str):
        self._expect("punct", "(", "'(' after IN")
        values = []
        if not self._take("punct", ")"):
            values.append(self._literal())
            while self._take("punct", ","):
                values.append(self._literal())
            self._expect("punct", ")", "')' to close IN")
        if not values:
            # `x IN ()` (omnivec's spelling of an empty set) holds for no row; its negation for rows with x.
            return FALSE, (TRUE if name in self.fixed else self._exists(name))
        f = self._field(name)
        listed = "[" + ", ".join(_value(v) for v in values) + "]"
        return f"({f} in {listed})", self._guard(name, f"{f} not in {listed}")

    def _like(self, name: str):
        pattern = self._literal()
        if not isinstance(pattern, str):
            raise self._error("LIKE needs a 'string' pattern")
        body = pattern[:-1] if pattern.endswith("%") else pattern
        if any(c in body for c in "%_"):
            raise self._error(f"pattern {pattern!r}: Milvus matches only prefixes ('abc%') or exact text")
        f = self._field(name)
        test = f"({f} like {_value(pattern)})"
        return test, self._guard(name, f"not {test}")


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)   # a double-quoted string; Milvus reads JSON's escapes


def _and(a, b):
    if a is FALSE or b is FALSE:
        return FALSE
    if a is TRUE:
        return b
    if b is TRUE:
        return a
    return f"({a} and {b})"


def _or(a, b):
    if a is TRUE or b is TRUE:
        return TRUE
    if a is FALSE:
        return b
    if b is FALSE:
        return a
    return f"({a} or {b})"
