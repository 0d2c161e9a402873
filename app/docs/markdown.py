"""Markdown for the generated references: tables, and msgspec types in words."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import msgspec.inspect as mi

GENERATED = "<!-- Written by `python -m app.docs` from the code; edit the code, then run it again. -->"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in row) + " |" for row in rows]
    return lines


def doc(kind: type) -> str:
    """The class docstring as one paragraph (empty when the class inherits its only docstring)."""
    text = kind.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(text).split()) if text else ""


Link = Callable[[str], str]   # a Struct's name -> where it is described


def here(name: str) -> str:
    return f"#{name.lower()}"


def type_text(t: mi.Type, link: Link = here) -> str:
    """A msgspec type in words: `string`, `list of string`, `integer ≥ 1`, `[Condition](#condition)`."""
    match t:
        case mi.StrType():
            return "string" + _bounds(t)
        case mi.BoolType():
            return "boolean"
        case mi.IntType():
            return "integer" + _bounds(t)
        case mi.FloatType():
            return "number" + _bounds(t)
        case mi.NoneType():
            return "null"
        case mi.AnyType():
            return "any"
        case mi.DateTimeType():
            return "time (RFC 3339)"
        case mi.LiteralType():
            values = [f"`{value}`" for value in t.values]
            return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]
        case mi.ListType():
            return f"list of {_inner(t.item_type, link)}"
        case mi.DictType():
            return f"mapping of {_inner(t.key_type, link)} to {_inner(t.value_type, link)}"
        case mi.UnionType():
            return " or ".join(type_text(option, link) for option in t.types)
        case mi.StructType():
            name = t.cls.__name__
            return f"[{name}]({link(name)})"
    return type(t).__name__.removesuffix("Type").lower()


def _inner(t: mi.Type, link: Link) -> str:
    """A type inside a list or mapping: a union in parentheses, so it is not read as the outer type's."""
    text = type_text(t, link)
    return f"({text})" if isinstance(t, (mi.UnionType, mi.LiteralType)) and " or " in text else text


def _bounds(t: Any) -> str:
    parts = [f"{sign} {getattr(t, attr)}" for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
             if getattr(t, attr, None) is not None]
    if getattr(t, "pattern", None):
        parts.append(f"matching `{t.pattern}`")
    elif isinstance(t, mi.StrType) and t.max_length is not None:
        parts.append(f"of at most {t.max_length:,} characters")
    return " " + ", ".join(parts) if parts else ""


def default_text(field: mi.Field) -> str:
    if field.required:
        return "required"
    if field.default is msgspec.NODEFAULT:
        return "`" + repr(field.default_factory()).replace("'", '"') + "`" if field.default_factory else ""
    value = field.default
    if value is None:
        return "none"
    return "`" + msgspec.json.encode(value).decode() + "`"


def fields_of(kind: type) -> list[mi.Field]:
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    return list(info.fields)


def struct_table(kind: type, skip: Sequence[str] = (), link: Link = here) -> list[str]:
    """One row per field: its name as written, its type, its default."""
    return table(("field", "type", "default"), [(f"`{f.encode_name}`", type_text(f.type, link), default_text(f))
                                               for f in fields_of(kind) if f.encode_name not in skip])
