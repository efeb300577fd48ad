"""The bulk jobs: ``reconcile`` (backfill, orphans, prune and undo), ``sync-metadata``,
``promote``/``demote``. Each returns a typed result the CLI renders.
"""
