"""``CLERKSYNC_SCHEMA``: a preset's name, or a TOML mapping file that starts from a preset
and overrides it (docs/schema.md, "Mapping files"). Every mistake is one ConfigError (exit 2) at
start, never a strange document later."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from clerksync.errors import ConfigError
from clerksync.kinds.base import Kind
from clerksync.kinds.registry import BY_NAME, KINDS, rollups_onto
from clerksync.kinds.user import USER
from clerksync.mapping.schema import DEFAULT, PRESETS, Schema
from clerksync.mapping.sections import Section
from clerksync.mapping.users import METADATA_VALUES, SOURCES, AdminFlag, ClerkField, UserMapping

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")

#: what a mapping file's top level may hold: the preset it starts from, a table per kind
SECTIONS = {"preset", *(kind.plural for kind in KINDS)}

#: the one configuration variable this module reads, for messages
VARIABLE = "CLERKSYNC_SCHEMA"


def load_schema(value: str | None, *, cwd: Path | None = None) -> Schema:
    """The schema ``CLERKSYNC_SCHEMA`` names: a preset, or a mapping file; ConfigError else."""
    if not value:
        return DEFAULT
    if value in PRESETS:
        return PRESETS[value]
    path = Path(value)
    if not path.is_absolute() and cwd is not None:
        path = cwd / path
    if path.suffix != ".toml" or not path.is_file():
        raise ConfigError(
            f"{VARIABLE} must be nextjs, fastapi or the path of a mapping file (.toml); "
            f"got {value!r}" + ("" if path.suffix != ".toml" else " (no such file)")
        )
    return load_mapping_file(path)


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def load_mapping_file(path: Path) -> Schema:
    """A TOML mapping file -> Schema. Every mistake is one ConfigError naming the file."""
    where = f"{VARIABLE} {path}"
    try:
        data = _toml_loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.__class__.__name__})") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    try:
        return schema_from_dict(data, name=str(path))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def schema_from_dict(data: Mapping[str, Any], *, name: str) -> Schema:
    """Apply a mapping (as parsed from TOML) over its preset; ValueError says what is wrong."""
    _only(data, SECTIONS, "top level")
    preset_name = data.get("preset", "nextjs")
    if preset_name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset_name!r}")
    base = PRESETS[preset_name]
    users = base.users
    if "users" in data:
        table = _table(data["users"], "[users]")
        users = _yield_derived(_users_over(base.users, table), named=set(table))
    _check_users(users)
    sections = {
        kind: _section_over(BY_NAME[kind], section, data.get(BY_NAME[kind].plural))
        for kind, section in base.sections.items()
    }
    return Schema(name=name, users=users, sections=sections)


def _derived_fields(kind: Kind) -> set[str]:
    """The fields other kinds keep on ``kind``'s documents (``plan``, ``plan_status``)."""
    return {f for _, rollup in rollups_onto(kind) for f in rollup.fields}


def _section_over(kind: Kind, base: Section, table: Any) -> Section:
    """``[organizations]``, ``[memberships]``…: field names over the preset's; "" drops an
    optional field, or (``collection``) the kind: the app keeps none. Each name is a
    top-level field, used once."""
    if table is None:
        return base
    where = kind.plural
    table = _table(table, f"[{where}]")
    derived = _derived_fields(kind)
    keys = ("collection", "clerk_id", *kind.fields, "created_at", "updated_at", *derived)
    _only(table, set(keys), f"[{where}]")
    optional = {*kind.optional, "collection", "created_at", "updated_at", *derived}
    names = dict(base.names)
    collection = base.collection
    for key, value in table.items():
        name = _name(value, f"{where}.{key}", optional=key in optional)
        if key == "collection":
            collection = name
        else:
            names[key] = name
    used = [n for n in names.values() if n is not None]
    if len(set(used)) != len(used) or "_id" in used:
        raise ValueError(f"[{where}] maps two things to one field, or something to _id")
    return Section(kind.name, collection, names)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})"
        )


def _name(value: Any, where: str, *, optional: bool = False) -> str | None:
    """A field name, or None when ``optional`` and given as ``""`` (no such field)."""
    if optional and value == "":
        return None
    if not isinstance(value, str) or not _FIELD_NAME.match(value) or value == "clerksync":
        raise ValueError(
            f"{where} must be a top-level field name (letters, digits, _), got {value!r}"
        )
    return value


def _users_over(base: UserMapping, table: Mapping[str, Any]) -> UserMapping:
    allowed = {"collection", "clerk_id", "fields", "on_insert", "null_on_insert", "omit"}
    allowed |= {"admin", "created_at", "updated_at", "app_id", "metadata"}
    derived = _derived_fields(USER)
    _only(table, allowed | derived, "[users]")
    changes: dict[str, Any] = {}
    if derived & set(table):
        changes["derived"] = {
            **base.derived,
            **{f: _name(table[f], f"users.{f}", optional=True) for f in derived if f in table},
        }
    if "collection" in table:
        changes["collection"] = _name(table["collection"], "users.collection")
    if "clerk_id" in table:
        changes["clerk_id"] = _name(table["clerk_id"], "users.clerk_id")
    for key in ("created_at", "updated_at", "app_id"):
        if key in table:
            changes[key] = _name(table[key], f"users.{key}", optional=True)
    fields = {f.name: f for f in base.fields}
    for app_field, spec in _table(table.get("fields", {}), "[users.fields]").items():
        _name(app_field, f"users.fields key {app_field!r}")
        if spec == "":
            fields.pop(app_field, None)
            continue
        if isinstance(spec, str):
            spec = {"from": spec}
        spec = _table(spec, f"users.fields.{app_field}")
        _only(spec, {"from", "default"}, f"users.fields.{app_field}")
        source = spec.get("from")
        if source not in SOURCES:
            raise ValueError(
                f"users.fields.{app_field}: unknown source {source!r} (one of {', '.join(SOURCES)})"
            )
        fields[app_field] = ClerkField(app_field, source, spec.get("default"))
    on_insert = dict(base.on_insert)
    on_insert.update(_table(table.get("on_insert", {}), "[users.on_insert]"))
    nulls = table.get("null_on_insert", [])
    if not isinstance(nulls, list):
        raise ValueError("users.null_on_insert must be a list of field names")
    for null_field in nulls:
        on_insert[str(_name(null_field, "users.null_on_insert entry"))] = None
    omit = table.get("omit", [])
    if not isinstance(omit, list):
        raise ValueError("users.omit must be a list of field names")
    for gone in omit:
        fields.pop(gone, None)
        on_insert.pop(gone, None)
    for key in on_insert:
        _name(key, f"users.on_insert key {key!r}")
    changes["fields"] = tuple(fields.values())
    changes["on_insert"] = on_insert
    if "admin" in table:
        changes["admin"] = _admin(table["admin"])
    if "metadata" in table:
        metadata = dict(base.metadata)
        for key, what in _table(table["metadata"], "[users.metadata]").items():
            if what == "":
                metadata.pop(key, None)
                continue
            if what not in METADATA_VALUES:
                raise ValueError(
                    f"users.metadata.{key}: must be one of "
                    f"{', '.join(METADATA_VALUES)}, got {what!r}"
                )
            metadata[key] = what
        changes["metadata"] = metadata
    return replace(base, **changes)


def _admin(spec: Any) -> AdminFlag:
    if isinstance(spec, str):
        return AdminFlag(str(_name(spec, "users.admin")), True, False)
    table = _table(spec, "users.admin")
    _only(table, {"field", "value", "unset"}, "users.admin")
    name = _name(table.get("field"), "users.admin.field")
    assert name is not None
    value = table.get("value", True)
    if value is True:
        return AdminFlag(name, True, table.get("unset", False))
    if not isinstance(value, str) or not value:
        raise ValueError("users.admin.value must be true (a boolean flag) or a role string")
    return AdminFlag(name, value, table.get("unset"))


def _yield_derived(users: UserMapping, named: set[str]) -> UserMapping:
    """A field kept from other kinds (the plan) that the mapping did not name itself gives
    way to a field of the app's own of that name (an insert constant ``plan = "free"``, say):
    a mapping written before clerksync kept plans still loads, and the app's field is left
    as the app writes it. Named in ``[users]``, a clash is an error (``_check_users``)."""
    taken = {users.clerk_id, users.admin.field, users.created_at, users.updated_at}
    taken |= {users.app_id, *users.on_insert, *(f.name for f in users.fields)}
    derived = {
        logical: None if logical not in named and name in taken else name
        for logical, name in users.derived.items()
    }
    return replace(users, derived=derived) if derived != dict(users.derived) else users


def _check_users(users: UserMapping) -> None:
    """One writer per field, and every name usable as a top-level field."""
    seen: dict[str, str] = {}

    def claim(name: str | None, role: str) -> None:
        if name is None:
            return
        if name in seen:
            raise ValueError(f"field {name!r} is both {seen[name]} and {role}")
        seen[name] = role

    claim(users.clerk_id, "the Clerk id")
    for clerk_field in users.fields:
        claim(clerk_field.name, f"a Clerk field ({clerk_field.source})")
    claim(users.admin.field, "the admin flag")
    for name in users.on_insert:
        claim(name, "an insert constant")
    claim(users.created_at, "created_at")
    claim(users.updated_at, "updated_at")
    claim(users.app_id, "the app id")
    for logical, derived in users.derived.items():
        claim(derived, f'the {logical} kept from other kinds ([users] {logical} = "…" renames it)')
    if "_id" in seen:
        raise ValueError("_id is MongoDB's: map no field to it")
    if "app_id" in users.metadata.values() and not users.app_id:
        raise ValueError("users.metadata names app_id but users.app_id is not set")
