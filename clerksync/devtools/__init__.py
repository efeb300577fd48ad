"""The developer loop: ``send`` (signed test events, Clerk's documented examples), the
local state ``serve --dev`` and ``send`` share, and realistic Clerk payloads.
"""
