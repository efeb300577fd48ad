"""The Clerk side: the Backend API through the official SDK (``gateway``; its failures as
errors, ``answers``), pacing and retries under Clerk's rate limits (``pacing``), Svix
signatures (``webhooks``), and the route templates requests are counted under (``routes``).
Nothing here knows MongoDB.
"""
