"""The app's schema: which collection and fields each Clerk object goes to (presets and
mapping files), the documents a Clerk state writes, clerksync's own bookkeeping fields, and
the parsing of a whole webhook event. No I/O.
"""
