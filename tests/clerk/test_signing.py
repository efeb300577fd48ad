"""Signatures are svix's: made and checked by svix's own ``svix.webhooks``, loaded without
the svix package's API client (``clerksync.clerk.webhooks.svix_webhooks``), in a fresh
interpreter as ``send`` and ``serve`` load it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]


def fresh_python(code: str, **env: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_signing_and_verifying_load_svix_webhooks_alone_and_agree_with_svix() -> None:
    said = fresh_python(
        f"""
        import json, sys
        from datetime import datetime, timezone
        from clerksync.clerk.webhooks import sign, verify, SignatureError
        body = b'{{"type": "user.created"}}'
        fresh = sign({WEBHOOK_SECRET!r}, body)  # now: within svix's tolerance
        def checked(body):
            try:
                verify({WEBHOOK_SECRET!r}, body, fresh)
                return "accepted"
            except SignatureError as refused:
                return str(refused)
        accepted, tampered = checked(body), checked(body + b" ")
        headers = sign({WEBHOOK_SECRET!r}, body, msg_id="msg_1", timestamp=1_700_000_000)
        loaded_alone = "svix" not in sys.modules and "svix.api" not in sys.modules
        from svix.webhooks import Webhook  # the whole package, as an app imports it
        when = datetime.fromtimestamp(1_700_000_000, timezone.utc)
        svix_signs = Webhook({WEBHOOK_SECRET!r}).sign("msg_1", when, body.decode())
        print(json.dumps({{"alone": loaded_alone, "accepted": accepted, "tampered": tampered,
                           "ours": headers["svix-signature"], "svix": svix_signs}}))
        """
    )
    assert said["alone"], "svix's package (its API client) was imported"
    assert said["ours"] == said["svix"]
    assert said["accepted"] == "accepted"
    assert "no matching signature" in said["tampered"].lower(), said["tampered"]


def test_a_svix_whose_webhooks_module_needs_its_package_is_imported_the_usual_way(
    tmp_path: Path,
) -> None:
    package = tmp_path / "svix"
    package.mkdir()
    (package / "__init__.py").write_text("from .webhooks import Webhook\n")
    (package / "webhooks.py").write_text(
        "from .inner import Webhook, WebhookVerificationError  # a relative import\n"
    )
    (package / "inner.py").write_text(
        "class WebhookVerificationError(Exception):\n    pass\n\n"
        "class Webhook:\n    def __init__(self, secret):\n        self.secret = secret\n"
    )
    said = fresh_python(
        """
        import json, sys
        from clerksync.clerk.webhooks import svix_webhooks
        module = svix_webhooks()
        print(json.dumps({"name": module.__name__, "package": "svix" in sys.modules,
                          "webhook": module.Webhook("k").secret}))
        """,
        PYTHONPATH=str(tmp_path),
    )
    assert said == {"name": "svix.webhooks", "package": True, "webhook": "k"}
