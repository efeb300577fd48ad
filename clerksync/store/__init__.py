"""MongoDB: connecting (the embedded default included), the collections and their indexes,
the one write path every Clerk object takes (upsert, page write, delete with cascades and
tombstones), lookups, and the instance binding. pymongo's failures leave it as
``StoreUnavailable``/``IndexRefused``.
"""
