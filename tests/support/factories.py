"""Test data made through the real services, so tests exercise the same paths as clients."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from rooms.services import accounts, rooms

_numbers = itertools.count(1)


@dataclass
class Account:
    """A user with a bearer token."""

    user: Any
    token: str

    @property
    def auth(self) -> dict[str, str]:
        """Headers for the HTTP API."""
        return {"Authorization": f"Bearer {self.token}"}


def make_user(name: str | None = None, guest: bool = False) -> Account:
    """A signed-up user (or a guest) and a token for them."""
    label = name or f"user{next(_numbers)}"
    user = accounts.create_guest(label) if guest else accounts.signup(label, "correct-horse-9")
    return Account(user=user, token=accounts.issue_token(user))


def make_room(owner: Account, name: str = "Room", **options: Any) -> Any:
    """A room created by `owner` (its creator)."""
    return rooms.create_room(owner.user, name, **options)


def make_member(
    room: Any,
    name: str | None = None,
    role: str | None = None,
    permissions: list[str] | None = None,
    guest: bool = False,
) -> Account:
    """A user who has joined `room`, optionally with a given role or permissions."""
    account = make_user(name, guest=guest)
    membership = rooms.join_room(account.user, room.id, None)
    if role is not None or permissions is not None:
        if role is not None:
            membership.role = role
        if permissions is not None:
            membership.permissions = permissions
        membership.save()
    return account
