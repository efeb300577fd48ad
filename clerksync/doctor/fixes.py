"""The fixes doctor prints for the app's indexes, in the words of the app's ORM.

An index clerksync's fix makes by hand must be the one the app's model declares: Mongoose's
``autoIndex`` (the guide's Next.js app) and Beanie's ``init_beanie`` (the report's FastAPI
app) build the model's indexes at every start, and an index of the same name with other
options stops them ("an existing index has the same name"). So under a preset the fix says
what to declare in the model and lets the app's next start build it; under a mapping file
(any other model) it gives the shell commands.
"""

from __future__ import annotations

from clerksync.mapping.schema import Schema

#: the app's ORM under each preset, as the docs name it
ORMS = {"nextjs": "Mongoose", "fastapi": "Beanie"}


def partial_filter(field: str) -> str:
    """The partial filter that skips documents without a value (as JSON-ish text)."""
    return f'{{ {field}: {{ $type: "string" }} }}'


def model_declaration(schema: Schema, field: str, *, unique: bool = True) -> str | None:
    """The one line the app's model declares for an index on ``field`` that skips missing
    values (unique) or a plain one; None when the schema is not a preset's (no known ORM)."""
    orm = ORMS.get(schema.name)
    if orm == "Mongoose":
        options = (
            f"{{ unique: true, partialFilterExpression: {partial_filter(field)} }}"
            if unique
            else "{}"
        )
        return f"UserSchema.index({{ {field}: 1 }}, {options})"
    if orm == "Beanie":
        options = (
            f'unique=True, partialFilterExpression={{"{field}": {{"$type": "string"}}}}'
            if unique
            else ""
        )
        return f'IndexModel([("{field}", 1)], name="{field}_1"' + (
            f", {options})" if options else ")"
        )
    return None


def where_declared(schema: Schema, field: str, *, replacing: bool = True) -> str:
    """Where the model's declaration goes, in the ORM's words (``replacing``: the field's
    own ``unique`` declaration, which would make a second index of that name, goes)."""
    orm = ORMS.get(schema.name)
    if orm == "Mongoose":
        first = f"drop `unique: true` from {field} and add" if replacing else "add"
        return (
            f"in the Mongoose model, {first} the line below (autoIndex builds it at the "
            "app's next start)"
        )
    first = f"make {field} a plain field (no Indexed) and add" if replacing else "add"
    return (
        f"in the Beanie model, {first} the IndexModel below to Settings.indexes "
        "(init_beanie builds it at the app's next start)"
    )


def partial_index_fix(schema: Schema, collection: str, name: str, field: str) -> list[str]:
    """Commands that replace index ``name`` with a unique one skipping missing values."""
    declared = model_declaration(schema, field)
    drop = f'db.{collection}.dropIndex("{name}")'
    if declared is not None:
        return [declared, drop]
    return [
        drop,
        f'db.{collection}.createIndex({{ {field}: 1 }}, {{ name: "{name}", unique: true, '
        f"partialFilterExpression: {partial_filter(field)} }})",
    ]


def email_index_fix(schema: Schema, collection: str, field: str) -> list[str]:
    """Commands that give the app's email field an index (the receiver's adoption lookup):
    the unique one that skips missing values, as the guide's and the report's models have."""
    declared = model_declaration(schema, field)
    if declared is not None:
        return [declared]
    return [
        f'db.{collection}.createIndex({{ {field}: 1 }}, {{ name: "{field}_1", unique: true, '
        f"partialFilterExpression: {partial_filter(field)} }})"
    ]
