"""clerksync: keep an app's MongoDB users in step with Clerk.

The package is a library first (no typer, no rich outside ``clerksync.cli``),
so an app can mount the webhook receiver, call the bulk jobs itself, or ask for the
caller's document on its own request path: ``ensure_user`` / ``ensure_user_async``
(``clerksync.app.ensure``), and the FastAPI dependency ``clerksync.fastapi.current_user``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "ensure_user", "ensure_user_async"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `clerksync --help` must not pay for the database driver.
    if name in ("ensure_user", "ensure_user_async"):
        from clerksync.app import ensure

        return getattr(ensure, name)
    raise AttributeError(f"module 'clerksync' has no attribute {name!r}")
