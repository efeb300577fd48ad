"""The apps of the two journeys, on the database clerksync writes: the guide's Next.js app
(its Mongoose model, driven by Node) and the report's FastAPI app (its Beanie model).

Each ``start()`` is the app's start: the ORM builds the model's indexes (an index of the same
name with other options fails it, as it fails the real app), then every user document is read
back through the model and validated. The models are the docs' own files
(``docs/examples``), so the docs show what the tests run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.mongoshell import NODE_DIR, node

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
MONGOOSE_MODEL = EXAMPLES / "mongoose" / "models" / "User.js"
BEANIE_MODELS = EXAMPLES / "beanie" / "models.py"


@dataclass
class Started:
    indexes: list[str]
    users: int
    invalid: list[Any]


class MongooseApp:
    """The guide's app in ``folder``: ``models/User.js`` (the docs' model, or ``model``)."""

    def __init__(self, folder: Path, url: str, database: str, model: str | None = None) -> None:
        self.folder, self.url, self.database = folder, url, database
        (folder / "models").mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"type": "module"}')
        modules = folder / "node_modules"
        if not modules.exists():
            modules.symlink_to(NODE_DIR / "node_modules")
        self.model_file = folder / "models" / "User.js"
        self.model_file.write_text(model if model is not None else MONGOOSE_MODEL.read_text())

    def start(self) -> Started:
        done = subprocess.run(
            [node(), str(NODE_DIR / "app.mjs"), str(self.model_file), self.url, self.database],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"the app failed to start: {done.stderr[-2000:]}"
        return Started(**json.loads(done.stdout.strip().splitlines()[-1]))


def load_beanie_model(path: Path = BEANIE_MODELS) -> Any:
    """The ``User`` document class of a models file (a fresh module each time)."""
    spec = importlib.util.spec_from_file_location(f"beanie_models_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.User


class BeanieApp:
    """The report's app: ``init_beanie`` with the docs' ``User`` (or ``models``' file)."""

    def __init__(self, url: str, database: str, models: Path = BEANIE_MODELS) -> None:
        self.url, self.database, self.models = url, database, models

    def start(self) -> Started:
        return asyncio.run(self._start())

    async def _start(self) -> Started:
        from beanie import init_beanie
        from pydantic import ValidationError
        from pymongo import AsyncMongoClient

        user = load_beanie_model(self.models)
        client: Any = AsyncMongoClient(self.url)
        try:
            db = client[self.database]
            await init_beanie(database=db, document_models=[user])
            invalid = []
            raw = await db["users"].find({}).to_list(None)
            for doc in raw:
                try:
                    user.model_validate(doc)
                except ValidationError as exc:
                    invalid.append({"_id": str(doc["_id"]), "error": str(exc)})
            users = await user.find_all().to_list()  # the app's own read, through the model
            cursor = await db["users"].list_indexes()
            indexes = [i["name"] for i in await cursor.to_list(None)]
            return Started(indexes, len(users), invalid)
        finally:
            await client.close()
