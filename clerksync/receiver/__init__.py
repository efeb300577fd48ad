"""The webhook receiver as an ASGI app: HTTP limits, verify -> parse -> one durable
write -> 2xx, health, and the process ``serve`` runs.
"""
