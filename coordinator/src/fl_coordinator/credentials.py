"""CredentialStore: admin, read-only, enrollment and device tokens, kept hashed in the registry.

A secret is ``<prefix><43 url-safe characters>`` (256 random bits), the prefix saying what a leaked
string is: ``fla_`` admin, ``flr_`` read-only, ``fle_`` enrollment (single use), ``fld_`` device.
Only the SHA-256 of a secret is stored; the secret is shown once, when it is created.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from fl_coordinator.errors import FlCoordinatorError
from fl_coordinator.registry import Registry, utc_now
from fl_coordinator.registry_schema import ApiTokenRow
from fl_shared.wire import LABEL_KEY_PATTERN, LABEL_VALUE_MAX

TokenKind = Literal["admin", "read", "enroll", "device"]
TokenStatus = Literal["active", "used", "expired", "revoked"]
KINDS: tuple[TokenKind, ...] = get_args(TokenKind)
PREFIXES: dict[TokenKind, str] = {
    "admin": "fla_",
    "read": "flr_",
    "enroll": "fle_",
    "device": "fld_",
}
_KIND_OF_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}
_SECRET_BODY = re.compile(r"[A-Za-z0-9_-]{43}")
# How long a successful authentication is remembered; revocations through this store end it at
# once, revocations by another process (another coordinator on the same database) within this.
CACHE_TTL = timedelta(seconds=30)
_CACHE_MAX = 100_000
ENROLL_HINT = "create a new one with `flctl devices enroll-token`"


class EnrollmentRefused(FlCoordinatorError):
    """An enrollment token was unknown, already used, expired or revoked (HTTP 401/403)."""


class TokenNotFound(FlCoordinatorError):
    """No token with that id (HTTP 404)."""


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the only time its secret is known."""

    token_id: str
    secret: str = field(repr=False)
    kind: TokenKind
    name: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who a valid secret belongs to."""

    token_id: str
    kind: TokenKind
    name: str
    device_id: str | None


@dataclass(frozen=True)
class EnrollmentGrant:
    """What a consumed enrollment token allows: one device, with these labels."""

    token_id: str
    labels: dict[str, str]


@dataclass(frozen=True)
class TokenInfo:
    """A token as listings show it: no secret, no hash."""

    token_id: str
    kind: TokenKind
    name: str
    status: TokenStatus
    device_id: str | None
    labels: dict[str, str]
    created_at: datetime
    expires_at: datetime | None
    used_at: datetime | None
    revoked_at: datetime | None


def secret_hash(secret: str) -> str:
    """SHA-256 hex of a secret: what the registry stores and looks tokens up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


def kind_of_secret(secret: str) -> TokenKind | None:
    """The kind a secret's prefix names, or None when it is not shaped like one of our secrets."""
    kind = _KIND_OF_PREFIX.get(secret[:4])
    if kind is None or not _SECRET_BODY.fullmatch(secret[4:]):
        return None
    return kind


class CredentialStore:
    """Creates, checks and revokes tokens in the registry database."""

    def __init__(self, registry: Registry, clock: Callable[[], datetime] = utc_now) -> None:
        """Keep tokens in ``registry``'s database; ``clock`` decides expiry."""
        self._registry = registry
        self._clock = clock
        # secret hash -> (principal, valid until); read without a lock (one dict lookup).
        self._cache: dict[str, tuple[Principal, datetime]] = {}
        # Cache inserts and evictions; a lookup caches only if no revocation ended meanwhile.
        self._lock = threading.Lock()
        self._generation = 0

    # -- creating ------------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        name: str,
        *,
        expires_in: timedelta | None = None,
        labels: Mapping[str, str] | None = None,
        device_id: str | None = None,
    ) -> IssuedToken:
        """Create a token; its secret is in the result and nowhere else."""
        checked = _check_kind(kind)
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValueError("expires_in must be positive (or None: the token never expires)")
        if (checked == "device") != (device_id is not None):
            raise ValueError("device_id is required for device tokens and only for them")
        if labels and checked != "enroll":
            raise ValueError("labels are only for enrollment tokens")
        clean = _check_labels(labels or {})
        return self._registry.write(
            lambda session: self._insert(session, checked, name, expires_in, clean, device_id)
        )

    def issue_device_credential(self, device_id: str) -> IssuedToken:
        """A new credential for a device; its earlier credentials stop working."""

        def work(session: Session) -> IssuedToken:
            self._revoke_where(session, ApiTokenRow.kind == "device", device_id=device_id)
            return self._insert(session, "device", f"device {device_id}", None, {}, device_id)

        issued = self._registry.write(work)
        self._forget(lambda p: p.device_id == device_id)
        return issued

    def _insert(
        self,
        session: Session,
        kind: TokenKind,
        name: str,
        expires_in: timedelta | None,
        labels: dict[str, str],
        device_id: str | None,
    ) -> IssuedToken:
        # Generated inside the transaction: a retry after a (48-bit) id collision draws anew.
        token_id = f"tok-{secrets.token_hex(6)}"
        secret = PREFIXES[kind] + secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = now + expires_in if expires_in is not None else None
        session.add(
            ApiTokenRow(
                token_id=token_id,
                kind=kind,
                name=name,
                secret_hash=secret_hash(secret),
                device_id=device_id,
                labels=labels,
                created_at=now,
                expires_at=expires_at,
            )
        )
        session.flush()
        return IssuedToken(token_id, secret, kind, name, expires_at)

    # -- checking ------------------------------------------------------------------------------

    def warm_devices(self) -> int:
        """Cache every active device credential at once (for 2 x CACHE_TTL); returns how many.

        Called by the heartbeat writer every CACHE_TTL, so that heartbeats never miss the cache
        and wait for a database read; a revocation in this process still applies at once.
        """
        now = self._clock()
        generation = self._generation
        rows = self._registry.read(
            lambda session: builtins.list(
                session.scalars(
                    select(ApiTokenRow).where(
                        ApiTokenRow.kind == "device", ApiTokenRow.revoked_at.is_(None)
                    )
                )
            )
        )
        fresh: dict[str, tuple[Principal, datetime]] = {}
        for row in rows:
            if _status(row, now) != "active":
                continue
            until = now + 2 * CACHE_TTL
            expires_at = _aware(row.expires_at)
            if expires_at is not None:
                until = min(until, expires_at)
            principal = Principal(row.token_id, "device", row.name, row.device_id)
            fresh[row.secret_hash] = (principal, until)
        with self._lock:
            if generation != self._generation:
                return 0  # revoked meanwhile: the next warm-up reads again
            self._cache.update(fresh)
        return len(fresh)

    def cached(self, secret: str) -> Principal | None:
        """The principal if this secret was authenticated recently; never reads the database.

        For event-loop code: on None, call authenticate() in a worker thread.
        """
        hit = self._cache.get(secret_hash(secret))
        if hit is not None and self._clock() < hit[1]:
            return hit[0]
        return None

    def authenticate(self, secret: str) -> Principal | None:
        """The principal of a valid admin, read or device secret; None for anything else.

        Enrollment secrets authenticate nothing (see consume_enrollment). Successes are cached
        for up to CACHE_TTL, so that heartbeats cost no database read.
        """
        kind = kind_of_secret(secret)
        if kind is None or kind == "enroll":
            return None
        digest = secret_hash(secret)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now < hit[1]:
            return hit[0]
        generation = self._generation
        row = self._registry.read(lambda session: _row_by_hash(session, digest))
        if row is None or row.kind != kind or _status(row, now) != "active":
            return None
        principal = Principal(row.token_id, kind, row.name, row.device_id)
        until = now + CACHE_TTL
        expires_at = _aware(row.expires_at)
        if expires_at is not None:
            until = min(until, expires_at)
        with self._lock:
            if generation == self._generation:
                if len(self._cache) >= _CACHE_MAX:
                    self._prune(now)
                self._cache[digest] = (principal, until)
        return principal

    def consume_enrollment(self, secret: str) -> EnrollmentGrant:
        """Use up an enrollment token; raises EnrollmentRefused naming what is wrong and the fix.

        Atomic: of two enrollments with the same token, exactly one succeeds.
        """
        kind = kind_of_secret(secret)
        if kind is not None and kind != "enroll":
            raise EnrollmentRefused(
                f"that is {'an' if kind == 'admin' else 'a'} {kind} token, not an enrollment "
                f"token (those start with {PREFIXES['enroll']}): {ENROLL_HINT}"
            )
        if kind is None:
            raise EnrollmentRefused(f"unknown enrollment token: {ENROLL_HINT}")
        digest = secret_hash(secret)
        return self._registry.write(lambda session: self._consume(session, digest))

    def _consume(self, session: Session, digest: str) -> EnrollmentGrant:
        now = self._clock()
        row = _row_by_hash(session, digest)
        if row is None or row.kind != "enroll":
            raise EnrollmentRefused(f"unknown enrollment token: {ENROLL_HINT}")
        refusal = _refusal(row, now)
        if refusal is not None:
            raise EnrollmentRefused(refusal)
        # The WHERE makes the check and the mark one step: a concurrent enrollment that read
        # the same unused row updates nothing (PostgreSQL re-checks it after our commit).
        result = cast(
            CursorResult[Any],
            session.execute(
                update(ApiTokenRow)
                .where(
                    ApiTokenRow.token_id == row.token_id,
                    ApiTokenRow.used_at.is_(None),
                    ApiTokenRow.revoked_at.is_(None),
                )
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount != 1:
            raise EnrollmentRefused(_used_message(row.token_id))
        return EnrollmentGrant(row.token_id, {str(k): str(v) for k, v in row.labels.items()})

    def release_enrollment(self, token_id: str) -> None:
        """Make a consumed enrollment token usable again (its enrollment failed afterwards)."""

        def work(session: Session) -> None:
            session.execute(
                update(ApiTokenRow)
                .where(ApiTokenRow.token_id == token_id, ApiTokenRow.kind == "enroll")
                .values(used_at=None)
                .execution_options(synchronize_session=False)
            )

        self._registry.write(work)

    def any_active(self, kind: str) -> bool:
        """Whether a token of this kind exists that is not revoked, expired or used."""
        checked = _check_kind(kind)
        now = self._clock()

        def work(session: Session) -> bool:
            rows = session.scalars(
                select(ApiTokenRow).where(
                    ApiTokenRow.kind == checked, ApiTokenRow.revoked_at.is_(None)
                )
            )
            return any(_status(row, now) == "active" for row in rows)

        return self._registry.read(work)

    # -- revoking and listing ------------------------------------------------------------------

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke one token (again: no change); raises TokenNotFound."""

        def work(session: Session) -> TokenInfo:
            row = session.get(ApiTokenRow, token_id, with_for_update=True)
            if row is None:
                raise TokenNotFound(f"no token {token_id!r}: check the id")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            return _info(row, self._clock())

        info = self._registry.write(work)
        self._forget(lambda p: p.token_id == token_id)
        return info

    def revoke_device(self, device_id: str) -> int:
        """Revoke every credential of a device; returns how many were still valid."""
        count = self._registry.write(
            lambda session: self._revoke_where(session, device_id=device_id)
        )
        self._forget(lambda p: p.device_id == device_id)
        return count

    def list(self, kind: str | None = None) -> builtins.list[TokenInfo]:
        """Every token (of one kind), oldest first; never a secret or a hash."""
        query = select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.token_id)
        if kind is not None:
            query = query.where(ApiTokenRow.kind == _check_kind(kind))
        now = self._clock()
        return self._registry.read(
            lambda session: [_info(row, now) for row in session.scalars(query)]
        )

    def _revoke_where(self, session: Session, *where: Any, device_id: str) -> int:
        result = cast(
            CursorResult[Any],
            session.execute(
                update(ApiTokenRow)
                .where(ApiTokenRow.device_id == device_id, ApiTokenRow.revoked_at.is_(None), *where)
                .values(revoked_at=self._clock())
                .execution_options(synchronize_session=False)
            ),
        )
        return result.rowcount

    # -- the cache -----------------------------------------------------------------------------

    def _forget(self, matches: Callable[[Principal], bool]) -> None:
        """Drop cached principals after a revocation committed.

        The generation bump stops a lookup that read the row before the commit from caching
        it afterwards; one that cached it before is removed here.
        """
        with self._lock:
            self._generation += 1
            for digest, (principal, _until) in builtins.list(self._cache.items()):
                if matches(principal):
                    self._cache.pop(digest, None)

    def _prune(self, now: datetime) -> None:
        for digest, (_principal, until) in builtins.list(self._cache.items()):
            if until <= now:
                del self._cache[digest]
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()


def _check_kind(kind: str) -> TokenKind:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}: use one of {', '.join(KINDS)}")
    return cast(TokenKind, kind)


def _check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not LABEL_KEY_PATTERN.fullmatch(key):
            raise ValueError(
                f"label key {key!r}: 1-63 letters, digits, '.', '_', '/', '-', starting with a "
                "letter or digit"
            )
        if len(value) > LABEL_VALUE_MAX:
            raise ValueError(f"label {key!r}: value is longer than {LABEL_VALUE_MAX} characters")
    return dict(labels)


def _row_by_hash(session: Session, digest: str) -> ApiTokenRow | None:
    row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.secret_hash == digest)).first()
    # The index found it by equality; the constant-time comparison keeps the final check free of
    # timing differences that depend on how much of the hash matched.
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        return None
    return row


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _status(row: ApiTokenRow, now: datetime) -> TokenStatus:
    if row.revoked_at is not None:
        return "revoked"
    if row.used_at is not None:
        return "used"
    expires_at = _aware(row.expires_at)
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def _refusal(row: ApiTokenRow, now: datetime) -> str | None:
    status = _status(row, now)
    if status == "revoked":
        return (
            f"enrollment token {row.token_id} was revoked at {_when(row.revoked_at)}: {ENROLL_HINT}"
        )
    if status == "used":
        return _used_message(row.token_id, row.used_at)
    if status == "expired":
        return f"enrollment token {row.token_id} expired at {_when(row.expires_at)}: {ENROLL_HINT}"
    return None


def _used_message(token_id: str, used_at: datetime | None = None) -> str:
    when = f" at {_when(used_at)}" if used_at is not None else ""
    return (
        f"enrollment token {token_id} was already used{when}: each enrollment token works once: "
        f"{ENROLL_HINT}"
    )


def _when(value: datetime | None) -> str:
    aware = _aware(value)
    return aware.isoformat(timespec="seconds") if aware is not None else "an unknown time"


def _info(row: ApiTokenRow, now: datetime) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id,
        kind=cast(TokenKind, row.kind),
        name=row.name,
        status=_status(row, now),
        device_id=row.device_id,
        labels={str(k): str(v) for k, v in (row.labels or {}).items()},
        created_at=cast(datetime, _aware(row.created_at)),
        expires_at=_aware(row.expires_at),
        used_at=_aware(row.used_at),
        revoked_at=_aware(row.revoked_at),
    )
