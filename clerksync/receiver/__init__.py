"""The webhook receiver as an ASGI app: HTTP limits, verify -> parse -> one durable
write -> 2xx, health, and the process ``serve`` runs. ``mount`` adds it to an app of yours.
"""

from clerksync.receiver.asgi import create_app, mount

__all__ = ["create_app", "mount"]
