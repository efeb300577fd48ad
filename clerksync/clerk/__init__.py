"""The Clerk side: the Backend API through the official SDK (``gateway``; its failures as
errors, ``answers``), pacing and retries under Clerk's rate limits (``pacing``), and Svix
signatures (``webhooks``). Nothing here knows MongoDB.
"""
