"""The Clerk objects clerksync mirrors, each validated from Clerk's JSON (a webhook's
``data`` or a Backend API list item). Pure functions, no I/O: a signed body is trusted to
come from Clerk, not to be well-formed.
"""
