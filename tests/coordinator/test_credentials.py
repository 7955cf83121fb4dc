"""Contract tests of the credential store on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from fl_coordinator.credentials import (
    CACHE_TTL,
    CredentialStore,
    EnrollmentRefused,
    TokenInfo,
    TokenNotFound,
)
from fl_coordinator.errors import FlCoordinatorError
from fl_coordinator.registry import Registry
from fl_coordinator.registry_schema import ApiTokenRow
from fl_shared.wire import DeviceRegistration

ENROLL_FIX = "flctl devices enroll-token"


@pytest.fixture
def registry(database_url: str, fake_clock: Any) -> Iterator[Registry]:
    reg = Registry(database_url, clock=fake_clock)
    reg.migrate()
    yield reg
    reg.close()


@pytest.fixture
def store(registry: Registry, fake_clock: Any) -> CredentialStore:
    return CredentialStore(registry, clock=fake_clock)


def _rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(select(ApiTokenRow.__table__))]
    engine.dispose()
    return rows


# -- creating and authenticating ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("admin", "fla_"), ("read", "flr_"), ("enroll", "fle_"), ("device", "fld_")],
)
def test_secrets_say_what_they_are(store: CredentialStore, kind: str, prefix: str) -> None:
    issued = store.create(kind, "t", device_id="dev-1" if kind == "device" else None)
    assert issued.secret.startswith(prefix) and len(issued.secret) == 4 + 43
    assert issued.token_id.startswith("tok-") and len(issued.token_id) == 16
    assert issued.kind == kind


def test_only_the_hash_is_stored(store: CredentialStore, database_url: str) -> None:
    issued = store.create("admin", "ops")
    assert issued.secret not in repr(issued)
    (row,) = _rows(database_url)
    assert row["secret_hash"] == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert all(issued.secret not in str(value) for value in row.values())


def test_admin_and_read_tokens_authenticate(store: CredentialStore) -> None:
    admin = store.create("admin", "ops")
    read = store.create("read", "grafana")
    principal = store.authenticate(admin.secret)
    assert principal is not None
    assert (principal.token_id, principal.kind, principal.name, principal.device_id) == (
        admin.token_id,
        "admin",
        "ops",
        None,
    )
    reader = store.authenticate(read.secret)
    assert reader is not None and reader.kind == "read"


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "fla_",
        "fla_short",
        "Bearer fla_" + "A" * 43,
        "fla_" + "A" * 43,  # well-formed, never issued
        "fla_" + "A" * 42 + "!",
        "fla_" + "A" * 4000,
        "xyz_" + "A" * 43,
    ],
)
def test_unknown_and_malformed_secrets_authenticate_nobody(
    store: CredentialStore, secret: str
) -> None:
    store.create("admin", "ops")
    assert store.authenticate(secret) is None


def test_enrollment_secrets_authenticate_nobody(store: CredentialStore) -> None:
    enroll = store.create("enroll", "batch 1")
    assert store.authenticate(enroll.secret) is None


def test_expired_tokens_stop_working(store: CredentialStore, fake_clock: Any) -> None:
    issued = store.create("read", "ci", expires_in=timedelta(minutes=5))
    assert issued.expires_at == fake_clock.now + timedelta(minutes=5)
    assert store.authenticate(issued.secret) is not None
    fake_clock.advance(4 * 60)
    assert store.authenticate(issued.secret) is not None  # cached, but only up to its expiry
    fake_clock.advance(60)
    assert store.authenticate(issued.secret) is None
    assert store.list()[0].status == "expired"


def test_a_cache_hit_reads_no_database(
    store: CredentialStore, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = store.create("admin", "ops")
    assert store.authenticate(issued.secret) is not None

    def no_database(_work: Any) -> Any:
        raise AssertionError("the database was read")

    monkeypatch.setattr(registry, "read", no_database)
    for _ in range(3):
        assert store.authenticate(issued.secret) is not None


def test_revoking_through_the_store_ends_the_cache_at_once(
    store: CredentialStore, registry: Registry, fake_clock: Any
) -> None:
    issued = store.create("admin", "ops")
    assert store.authenticate(issued.secret) is not None
    # Another store (another coordinator process) revokes: this one trusts its cache a while.
    CredentialStore(registry, clock=fake_clock).revoke(issued.token_id)
    assert store.authenticate(issued.secret) is not None
    fake_clock.advance(CACHE_TTL.total_seconds())
    assert store.authenticate(issued.secret) is None

    other = store.create("admin", "ops 2")
    assert store.authenticate(other.secret) is not None
    store.revoke(other.token_id)
    assert store.authenticate(other.secret) is None


@pytest.mark.parametrize(
    ("kind", "args", "error"),
    [
        ("root", {}, "unknown token kind"),
        ("device", {}, "device_id is required"),
        ("admin", {"device_id": "dev-1"}, "device_id is required"),
        ("admin", {"labels": {"site": "lab"}}, "only for enrollment"),
        ("enroll", {"labels": {"-bad": "x"}}, "label key"),
        ("enroll", {"labels": {"site": "x" * 256}}, "longer than 255"),
        ("read", {"expires_in": timedelta(0)}, "must be positive"),
    ],
)
def test_create_refuses_bad_input(
    store: CredentialStore, kind: str, args: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        store.create(kind, "x", **args)


# -- enrollment --------------------------------------------------------------------------------


def test_an_enrollment_token_works_once(store: CredentialStore, fake_clock: Any) -> None:
    issued = store.create("enroll", "lab batch", labels={"site": "lab-2", "tier": "edge"})
    grant = store.consume_enrollment(issued.secret)
    assert (grant.token_id, grant.labels) == (issued.token_id, {"site": "lab-2", "tier": "edge"})
    with pytest.raises(EnrollmentRefused, match="already used at 2026-01-01") as refused:
        store.consume_enrollment(issued.secret)
    assert "each enrollment token works once" in str(refused.value)
    assert ENROLL_FIX in str(refused.value)
    assert isinstance(refused.value, FlCoordinatorError)
    (info,) = store.list("enroll")
    assert (info.status, info.used_at) == ("used", fake_clock.now)


def test_an_expired_enrollment_token_says_when(store: CredentialStore, fake_clock: Any) -> None:
    issued = store.create("enroll", "b", expires_in=timedelta(hours=1))
    fake_clock.advance(3600)
    with pytest.raises(EnrollmentRefused, match=r"expired at 2026-01-01T01:00:00\+00:00"):
        store.consume_enrollment(issued.secret)


def test_a_revoked_enrollment_token_is_refused(store: CredentialStore) -> None:
    issued = store.create("enroll", "b")
    store.revoke(issued.token_id)
    with pytest.raises(EnrollmentRefused, match=f"revoked .*{ENROLL_FIX}"):
        store.consume_enrollment(issued.secret)


@pytest.mark.parametrize("secret", ["fle_" + "A" * 43, "nonsense", ""])
def test_an_unknown_enrollment_token_is_refused(store: CredentialStore, secret: str) -> None:
    with pytest.raises(EnrollmentRefused, match=f"unknown enrollment token: .*{ENROLL_FIX}"):
        store.consume_enrollment(secret)


def test_another_kind_of_token_is_no_enrollment_token(store: CredentialStore) -> None:
    admin = store.create("admin", "ops")
    with pytest.raises(EnrollmentRefused, match="an admin token, not an enrollment token"):
        store.consume_enrollment(admin.secret)
    assert store.authenticate(admin.secret) is not None


def test_concurrent_enrollments_with_one_token_admit_one(store: CredentialStore) -> None:
    issued = store.create("enroll", "race")
    threads_n = 8
    start = threading.Barrier(threads_n)
    wins: list[str] = []
    refusals: list[str] = []

    def enroll() -> None:
        start.wait()
        try:
            wins.append(store.consume_enrollment(issued.secret).token_id)
        except EnrollmentRefused as exc:
            refusals.append(str(exc))

    threads = [threading.Thread(target=enroll) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert wins == [issued.token_id]
    assert len(refusals) == threads_n - 1
    assert all("already used" in message for message in refusals)


# -- device credentials ------------------------------------------------------------------------


def test_a_new_device_credential_replaces_the_old_one(store: CredentialStore) -> None:
    first = store.issue_device_credential("dev-1")
    other = store.issue_device_credential("dev-2")
    principal = store.authenticate(first.secret)
    assert principal is not None
    assert (principal.kind, principal.device_id) == ("device", "dev-1")
    second = store.issue_device_credential("dev-1")
    assert store.authenticate(first.secret) is None  # also out of the cache
    assert store.authenticate(second.secret) is not None
    assert store.authenticate(other.secret) is not None
    statuses = {i.token_id: i.status for i in store.list("device")}
    assert statuses == {
        first.token_id: "revoked",
        second.token_id: "active",
        other.token_id: "active",
    }


def test_revoke_device_ends_all_its_credentials(store: CredentialStore) -> None:
    cred = store.issue_device_credential("dev-1")
    kept = store.issue_device_credential("dev-2")
    assert store.authenticate(cred.secret) is not None
    assert store.revoke_device("dev-1") == 1
    assert store.authenticate(cred.secret) is None
    assert store.authenticate(kept.secret) is not None
    assert store.revoke_device("dev-1") == 0


# -- revoking and listing ----------------------------------------------------------------------


def test_revoke_keeps_the_first_time_and_knows_unknown_ids(
    store: CredentialStore, fake_clock: Any
) -> None:
    issued = store.create("read", "r")
    first = store.revoke(issued.token_id)
    assert (first.status, first.revoked_at) == ("revoked", fake_clock.now)
    fake_clock.advance(10)
    assert store.revoke(issued.token_id).revoked_at == first.revoked_at
    with pytest.raises(TokenNotFound, match="no token 'tok-000000000000'"):
        store.revoke("tok-000000000000")


def test_list_shows_no_secret_and_filters_by_kind(store: CredentialStore, fake_clock: Any) -> None:
    admin = store.create("admin", "ops")
    fake_clock.advance(1)
    enroll = store.create("enroll", "batch", labels={"site": "lab"}, expires_in=timedelta(days=1))
    fake_clock.advance(1)
    device = store.issue_device_credential("dev-1")
    assert [i.token_id for i in store.list()] == [admin.token_id, enroll.token_id, device.token_id]
    (info,) = store.list("enroll")
    assert (info.name, info.labels, info.status, info.expires_at) == (
        "batch",
        {"site": "lab"},
        "active",
        enroll.expires_at,
    )
    fields = {f.name for f in dataclasses.fields(TokenInfo)}
    assert not fields & {"secret", "secret_hash", "hash"}
    assert store.list("read") == []
    with pytest.raises(ValueError, match="unknown token kind"):
        store.list("root")


def test_any_active_ignores_revoked_and_expired_tokens(
    store: CredentialStore, fake_clock: Any
) -> None:
    assert not store.any_active("admin")
    revoked = store.create("admin", "a")
    store.revoke(revoked.token_id)
    store.create("admin", "b", expires_in=timedelta(seconds=10))
    assert store.any_active("admin")
    fake_clock.advance(10)
    assert not store.any_active("admin")
    store.create("admin", "c")
    assert store.any_active("admin")


def test_cached_never_reads_and_forgets_a_revoked_device(
    store: CredentialStore, registry: Registry
) -> None:
    device = registry.register_device(DeviceRegistration(name="edge")).device_id
    secret = store.issue_device_credential(device).secret
    assert store.cached(secret) is None  # not authenticated yet: the caller must read
    principal = store.authenticate(secret)
    assert principal is not None and store.cached(secret) == principal
    store.revoke_device(device)
    assert store.cached(secret) is None and store.authenticate(secret) is None
