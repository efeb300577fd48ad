"""The Clerk write-back: the queue kept on each user document (mark, lease, finish),
the one path that writes a user's metadata into Clerk, and the receiver's workers.
"""
