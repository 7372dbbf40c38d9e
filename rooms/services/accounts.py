"""Accounts: sign-up, login, guests, bearer tokens, and deactivation by staff."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from rooms.codes import CloseCode, ErrorCode
from rooms.errors import ServiceError, bad_request
from rooms.models import AuthToken, Membership, Presence, Profile
from rooms.services.events import publish_user_close
from rooms.services.rooms import has_nul

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"
MIN_PASSWORD_LENGTH = 8  # as AUTH_PASSWORD_VALIDATORS' MinimumLengthValidator
MAX_PASSWORD_LENGTH = 256
MAX_GUEST_NAME_LENGTH = 64
GUEST_LIFETIME = timedelta(days=7)
# What str.split() and str.strip() treat as whitespace, spelt out so that the OpenAPI schema
# (ECMA regex), pydantic (Rust regex) and Python agree on what a blank name is.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A name people can see: at least one character that is not whitespace, and no NUL.
VISIBLE_NAME_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class AccountBackend(ModelBackend):
    """Django's model backend, except that a guest past its lifetime is nobody: its session
    cookie no longer signs it in, over HTTP or on a WebSocket (both ask `get_user`)."""

    def user_can_authenticate(self, user: Any) -> bool:
        """An active account, and not a guest past its lifetime."""
        return bool(super().user_can_authenticate(user)) and not is_expired_guest(user)

    def get_user(self, user_id: Any) -> Any | None:
        """The session's user with its profile (one query), or None if it may not sign in."""
        user_model = get_user_model()
        users = user_model._default_manager.select_related("synctv_profile")
        found = users.filter(pk=user_id).first()
        return found if found is not None and self.user_can_authenticate(found) else None

    async def aget_user(self, user_id: Any) -> Any | None:
        """`get_user` from async code (`await request.auser()`): Django's own would call the
        synchronous checks above, which read the profile, on the event loop."""
        return await sync_to_async(self.get_user)(user_id)


SESSION_BACKEND = f"{AccountBackend.__module__}.{AccountBackend.__qualname__}"


def token_lifetime() -> timedelta:
    """How long a bearer token is valid from when it is issued (`auth.token_lifetime_days`)."""
    return timedelta(days=settings.SYNCTV_TOKEN_LIFETIME_DAYS)


def issue_token(user: Any) -> str:
    """A new bearer token for `user`, valid for token_lifetime(); only its hash is kept."""
    raw = secrets.token_urlsafe(32)
    expires_at = timezone.now() + token_lifetime()
    AuthToken.objects.create(user=user, key_hash=_token_hash(raw), expires_at=expires_at)
    return raw


def revoke_token(raw: str) -> None:
    """Forget a bearer token (logout)."""
    AuthToken.objects.filter(key_hash=_token_hash(raw)).delete()


def user_for_token(raw: str) -> Any | None:
    """The active user a bearer token belongs to, or None (unknown or expired token, expired
    guest)."""
    if not _token_shaped(raw):
        return None
    token = (
        AuthToken.objects.select_related("user", "user__synctv_profile")
        .filter(key_hash=_token_hash(raw), expires_at__gt=timezone.now())
        .first()
    )
    if token is None or not _can_sign_in(token.user):
        return None
    return token.user


def member_by_token(raw: str, room_id: str) -> Membership | None:
    """The membership in `room_id` of the active user a bearer token belongs to, with user
    and profile, in one query: a member reconnecting is admitted on this alone. None for
    anyone else (not a member yet, unknown or expired token, expired guest)."""
    if not _token_shaped(raw) or has_nul(room_id):
        return None
    membership = (
        Membership.objects.select_related("user__synctv_profile")
        .filter(
            room_id=room_id,
            user__synctv_tokens__key_hash=_token_hash(raw),
            user__synctv_tokens__expires_at__gt=timezone.now(),
        )
        .first()
    )
    if membership is None or not _can_sign_in(membership.user):
        return None
    return membership


def _token_shaped(raw: str) -> bool:
    return bool(raw) and len(raw) <= 256


def _can_sign_in(user: Any) -> bool:
    """An active account, and not a guest past its lifetime."""
    return bool(user.is_active) and not is_expired_guest(user)


def is_expired_guest(user: Any) -> bool:
    """A guest account past its lifetime can no longer sign in."""
    profile = getattr(user, "synctv_profile", None)
    return bool(
        profile and profile.is_guest and profile.expires_at and profile.expires_at < timezone.now()
    )


def _clean_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise bad_request(f"{what} must be a non-empty string")
    if has_nul(name):
        raise bad_request(f"{what} must not contain NUL characters")
    if len(name) > MAX_GUEST_NAME_LENGTH:
        raise bad_request(f"{what} must be at most {MAX_GUEST_NAME_LENGTH} characters")
    return " ".join(name.split())


def signup(username: str, password: str) -> Any:
    """Create an account; 409 if the name is taken."""
    # fullmatch: `$` alone would let a trailing newline through.
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise bad_request("username must be 3 to 32 characters: letters, digits, '_', '.' or '-'")
    _check_new_password(password)
    user_model = get_user_model()
    try:
        with transaction.atomic():
            if user_model.objects.filter(username__iexact=username).exists():
                raise IntegrityError
            user = user_model.objects.create_user(username=username, password=password)
            Profile.objects.create(user=user, display_name=username)
    except IntegrityError:
        raise ServiceError(ErrorCode.CONFLICT, f"the username {username!r} is taken") from None
    return user


def _check_new_password(password: Any, user: Any = None) -> None:
    if not isinstance(password, str) or not (
        MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH
    ):
        raise bad_request(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise bad_request(" ".join(exc.messages)) from None


def change_password(user: Any, old_password: str, new_password: str) -> None:
    """Check the old password and set the new one. Saving it revokes every bearer token of the
    account (rooms.models) and Django's session hash ends its other sessions."""
    if not user.has_usable_password():
        raise bad_request("a guest account has no password to change")
    if not isinstance(old_password, str) or not user.check_password(old_password):
        raise ServiceError(ErrorCode.FORBIDDEN, "the old password is wrong")
    _check_new_password(new_password, user)
    user.set_password(new_password)
    user.save()


def login(username: str, password: str) -> Any:
    """Check a username and password; 401 when they do not match."""
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request("username and password must be strings")
    if len(password) > MAX_PASSWORD_LENGTH or has_nul(username):
        raise ServiceError(ErrorCode.UNAUTHENTICATED, "wrong username or password")
    user = authenticate(username=username, password=password)
    if user is None:
        raise ServiceError(ErrorCode.UNAUTHENTICATED, "wrong username or password")
    return user


def create_guest(name: str) -> Any:
    """A guest account with a display name, valid for GUEST_LIFETIME."""
    display_name = _clean_name(name, "name")
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model(username=f"guest-{secrets.token_hex(6)}")
        user.set_unusable_password()
        user.save()
        Profile.objects.create(
            user=user,
            display_name=display_name,
            is_guest=True,
            expires_at=timezone.now() + GUEST_LIFETIME,
        )
    return user


def prune_expired_guests() -> int:
    """Delete the guest accounts past their lifetime, and every expired bearer token; returns
    how many guests went.

    A guest with a socket still open is kept (deleting it would pull rows from under a live
    consumer); a later run prunes it once it has left.
    """
    AuthToken.objects.filter(expires_at__lte=timezone.now()).delete()
    user_model = get_user_model()
    expired = user_model.objects.filter(
        synctv_profile__is_guest=True, synctv_profile__expires_at__lt=timezone.now()
    ).exclude(pk__in=Presence.objects.values("user_id"))
    _, deleted = expired.delete()
    return deleted.get(user_model._meta.label, 0)


def deactivate_user(user: Any) -> int:
    """Close a user's account site-wide: it may no longer sign in (its sessions then sign in
    nobody: AccountBackend), every bearer token is revoked, and every socket of the user, in
    any room on any node, gets `kicked`, an `error` and close 4003. Returns how many tokens
    went."""
    with transaction.atomic():
        type(user).objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        revoked, _ = AuthToken.objects.filter(user_id=user.pk).delete()
        close_user_sockets(user, "your account was deactivated")
    return revoked


def close_user_sockets(user: Any, reason: str) -> None:
    """Once the transaction commits: every socket of the user, on every node, gets `kicked`,
    an `error` (forbidden) and close 4003."""
    publish_user_close(
        user.pk, {"type": "kicked", "reason": "account_deactivated"}, CloseCode.NOT_ALLOWED, reason
    )
