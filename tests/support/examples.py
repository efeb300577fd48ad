"""Clerk's documented example of every webhook event (clerk/openapi-specs, MIT): the copy
``send`` ships with, so the tests and ``send`` speak the same shapes."""

from __future__ import annotations

from pathlib import Path

import clerksync.devtools

EXAMPLES_FILE = Path(clerksync.devtools.__file__).with_name("clerk_webhook_examples.json")
