"""What an app calls on its own request path: ``ensure_user`` (the caller's document, written
from Clerk when the webhook has not come yet) and the authentication of a request's Clerk
session token, which the FastAPI dependency (``clerksync.fastapi``) and the receiver's
``GET /api/users/me`` share.
"""
