"""The report's Beanie model, with index declarations that work beside clerksync.

``init_beanie`` builds these at every start: each one is the index clerksync expects, so the
app starts whether it or clerksync made the index first.
"""

from typing import Optional

from beanie import Document
from pymongo import IndexModel


class User(Document):
    user_id: int  # from clerksync's counter: above every id the app had, never reused
    username: str
    password_hash: Optional[str] = None
    role: Optional[str] = None  # "admin" after `clerksync promote`
    name: str
    email: Optional[str] = None  # None for a phone-only Clerk user
    phone: str = ""
    address: str = ""
    clerk_user_id: Optional[str] = None  # None on the users the app created itself
    auth_provider: str = "clerk"
    is_active: bool = True
    status: str = "active"

    class Settings:
        name = "users"
        indexes = [
            # clerksync's unique Clerk-id index, as clerksync makes it: Clerk user ids only
            IndexModel(
                [("clerk_user_id", 1)],
                name="clerk_user_id_1",
                unique=True,
                partialFilterExpression={"clerk_user_id": {"$gte": "user_", "$lt": "user`"}},
            ),
            IndexModel([("user_id", 1)], name="user_id_1", unique=True),
            # unique where present: any number of Clerk users without an email
            IndexModel(
                [("email", 1)],
                name="email_1",
                unique=True,
                partialFilterExpression={"email": {"$type": "string"}},
            ),
            # not unique: the username falls back to the email's local part, which two
            # Clerk users can share (Clerk keeps real usernames unique itself)
            IndexModel([("username", 1)], name="username_1"),
        ]
