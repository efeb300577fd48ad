"""Every code block of the docs that can run here runs, as written.

``sh`` blocks run line by line in a project set up as their page says (its schema, a
database on the test server, the fake Clerk, which knows every user a delivery named, as the
real one would; ``test_journey_blocks``, ``test_reference_blocks``); a ``clerksync serve``
line starts the receiver for the lines after it (on a port of the test's). ``python`` blocks
run (an ``app`` they build takes a signed delivery), ``toml`` mapping files load, ``js``
models start under mongoose, ``dotenv`` blocks name only variables clerksync reads. What
cannot run here is written ``shell``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from clerksync.settings import KNOWN_NAMES
from tests.conftest import WEBHOOK_SECRET
from tests.docs.blocks import RUN, SHOWN, blocks, pages


def test_every_block_is_run_or_marked_as_shown_only() -> None:
    for page in pages():
        for block in blocks(page):
            assert block.lang in RUN | SHOWN, (block.page, block.lang, block.text[:80])


def test_dotenv_blocks_name_only_variables_clerksync_reads() -> None:
    for page in pages():
        for block in blocks(page):
            if block.lang == "dotenv":
                names = [ln.split("=", 1)[0] for ln in block.text.splitlines() if "=" in ln]
                assert set(names) <= set(KNOWN_NAMES), (block.page, names)


def test_yaml_blocks_are_probes_the_receiver_serves(
    db_env: dict[str, str], webhook_secret: str
) -> None:
    """Kubernetes probes: each names a path the receiver answers, on serve's port."""
    import time

    import yaml
    from starlette.testclient import TestClient

    from clerksync.receiver.asgi import create_app
    from clerksync.settings import load_settings

    probes = []
    for page in pages():
        for block in blocks(page):
            if block.lang == "yaml":
                for probe in yaml.safe_load(block.text).values():
                    probes.append(probe["httpGet"])
    assert probes
    with TestClient(create_app(load_settings())) as client:
        for probe in probes:
            assert probe["port"] == 8000  # serve's default port
            deadline = time.monotonic() + 30  # /readyz: once the indexes are made
            while (status := client.get(probe["path"]).status_code) != 200:
                assert status == 503 and time.monotonic() < deadline, (probe, status)
                time.sleep(0.1)


def test_toml_blocks_are_mapping_files_that_load(tmp_path: Path) -> None:
    from clerksync.mapping.files import load_schema

    found = 0
    for page in pages():
        for block in blocks(page):
            if block.lang == "toml":
                path = tmp_path / f"m{found}.toml"
                path.write_text(block.text)
                assert load_schema(str(path)).users.clerk_id, block.page
                found += 1
    assert found


def test_py_blocks_shown_only_compile() -> None:
    """Python the docs show without running (it needs a Clerk user or the app's modules)."""
    shown = [b for p in pages() for b in blocks(p) if b.lang == "py"]
    assert shown
    import ast

    for block in shown:  # top-level await as an example shows it inside an async function
        compile(block.text, block.page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_python_blocks_run(db_env: dict[str, str], webhook_secret: str) -> None:
    from fastapi.testclient import TestClient

    from clerksync.clerk.webhooks import sign
    from clerksync.devtools.payloads import clerk_user, event

    ran = 0
    for page in pages():
        for block in blocks(page):
            if block.lang != "python":
                continue
            scope: dict[str, Any] = {"__name__": f"docs_{ran}"}
            exec(compile(block.text, block.page, "exec"), scope)  # as written
            ran += 1
            if "app" in scope:
                with TestClient(scope["app"]) as client:
                    body = json.dumps(event("user.created", clerk_user())).encode()
                    answer = client.post(
                        "/api/webhooks/clerk", content=body, headers=sign(WEBHOOK_SECRET, body)
                    )
                    assert answer.status_code == 200, (block.page, answer.text)
    assert ran


def test_js_blocks_are_models_that_start_or_lines_that_parse(
    tmp_path: Path, mongo_url: str
) -> None:
    from tests.support.apps import MongooseApp
    from tests.support.mongoshell import node

    for n, block in enumerate(b for p in pages() for b in blocks(p) if b.lang == "js"):
        if "export default" in block.text:
            app = MongooseApp(
                tmp_path / f"app{n}", mongo_url, f"js_{uuid.uuid4().hex[:8]}", block.text
            )
            assert app.start().invalid == []
        else:
            script = tmp_path / f"line{n}.mjs"
            script.write_text(block.text)
            checked = subprocess.run([node(), "--check", str(script)], capture_output=True)
            assert checked.returncode == 0, (block.page, checked.stderr)
