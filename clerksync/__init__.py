"""clerksync: keep an app's MongoDB users in step with Clerk.

The package is a library first (no typer, no rich outside ``clerksync.cli``),
so an app can mount the webhook receiver or call the bulk jobs itself.
"""

__version__ = "0.1.0"
