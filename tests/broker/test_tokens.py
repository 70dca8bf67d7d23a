"""Job tokens and the access JWTs made from them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from harness import lease_service, sim_resources

from slurm_qpu import jwt
from slurm_qpu.broker.journal import Journal, LeaseRecord, State
from slurm_qpu.broker.service import AcquireRequest
from slurm_qpu.broker.tokens import ACCESS_LIFETIME, TokenBook, TokenRef

KEY = b"k" * 32


def lease(job_id: int = 7, gen: int = 1, salt: str = "00" * 16,
          expires_at: float | None = 10_000.0) -> LeaseRecord:
    return LeaseRecord(job_id, gen, State.ACQUIRED, "alice", 1000, ["a"], {}, salt, 1000.0,
                       expires_at)


def test_a_job_token_names_the_job_and_generation_and_carries_a_mac() -> None:
    token = TokenBook(KEY).job_token(lease(7, 3))
    assert re.fullmatch(r"sqpu_7_3_[A-Za-z0-9_-]{43}", token)
    assert TokenBook(KEY).parse(token) == TokenRef(7, 3)
    assert TokenBook(KEY).matches(token, lease(7, 3))


def test_job_tokens_differ_per_generation_salt_and_key() -> None:
    book = TokenBook(KEY)
    tokens = {book.job_token(lease(7, 1)), book.job_token(lease(7, 2)),
              book.job_token(lease(7, 1, salt="11" * 16)), book.job_token(lease(8, 1)),
              TokenBook(b"x" * 32).job_token(lease(7, 1))}
    assert len(tokens) == 5


def test_two_leases_of_the_same_job_and_generation_in_two_journals_get_different_tokens(
        tmp_path: Path) -> None:
    # the salt is random per lease: a new journal (lost state) never re-issues old tokens
    one = Journal(tmp_path / "one.sqlite")
    two = Journal(tmp_path / "two.sqlite")
    a = one.begin(7, user=None, uid=None, names=[], overrides={}, expires_at=None)
    b = two.begin(7, user=None, uid=None, names=[], overrides={}, expires_at=None)
    book = TokenBook(KEY)
    assert (a.gen, b.gen) == (1, 1) and book.job_token(a) != book.job_token(b)


@pytest.mark.parametrize("forge", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character of the MAC changed
    lambda t: t.replace("sqpu_7_", "sqpu_8_"),  # another job
    lambda t: t.replace("_1_", "_2_", 1),  # another generation
    lambda t: t[:-1],  # truncated
    lambda t: t + "A",  # extended
    lambda t: t + "\n",
], ids=["mac", "job", "gen", "truncated", "extended", "newline"])
def test_a_forged_or_modified_token_is_refused(forge: object) -> None:
    book = TokenBook(KEY)
    token = book.job_token(lease(7, 1))
    forged = forge(token)  # type: ignore[operator]
    assert forged != token
    target = book.parse(forged)
    record = lease(target.job_id, target.gen) if target else lease(7, 1)
    assert not book.matches(forged, record)


def test_a_token_made_with_another_key_is_refused() -> None:
    assert not TokenBook(KEY).matches(TokenBook(b"x" * 32).job_token(lease()), lease())


def test_garbage_is_not_a_token() -> None:
    book = TokenBook(KEY)
    for garbage in (None, "", "nope", "sqpu_7_1_short", "a.b.c", "Bearer x"):
        assert book.parse(garbage) is None


def test_the_access_jwt_names_the_lease_and_expires_no_later_than_the_lease() -> None:
    book = TokenBook(KEY)
    record = lease(7, 2, expires_at=1000.0 + 600)
    token, life = book.access_token(record, now=1000.0)
    claims = jwt.verify(KEY, token, 1000.0)
    assert claims is not None
    assert (claims["job"], claims["gen"], claims["sub"]) == (7, 2, "job:7")
    assert life == 600 and claims["exp"] == 1600 and claims["exp"] <= record.expires_at
    assert claims["iat"] == 1000


def test_the_access_jwt_of_a_long_lease_lives_at_most_an_hour() -> None:
    token, life = TokenBook(KEY).access_token(lease(expires_at=None), now=1000.0)
    assert life == ACCESS_LIFETIME
    claims = jwt.verify(KEY, token, 1000.0)
    assert claims is not None and claims["exp"] == 1000 + ACCESS_LIFETIME


def test_the_access_jwt_is_checked_like_a_job_token() -> None:
    book = TokenBook(KEY)
    record = lease(7, 1, expires_at=None)
    token, _ = book.access_token(record)
    assert book.parse(token) == TokenRef(7, 1) and book.matches(token, record)
    assert not book.matches(token, lease(7, 2))
    head, body, sig = token.split(".")
    assert book.parse(f"{head}.{body}.{sig[:-2]}AA") is None  # signature changed
    assert TokenBook(b"x" * 32).parse(token) is None  # another broker's key
    expired, _ = book.access_token(record, now=1000.0)
    assert book.parse(expired) is None


def test_a_token_of_generation_1_is_refused_once_generation_2_exists(tmp_path: Path) -> None:
    service = lease_service(tmp_path, sim_resources(tmp_path / "ledger.jsonl"))
    first = service.acquire(AcquireRequest(7, qpus="sim_a", time_limit=600)).lease
    old = service.job_token(first)
    old_access, _ = service.tokens.access_token(first)
    assert service.authenticate(old) is not None
    service.release(7)
    second = service.acquire(AcquireRequest(7, qpus="sim_a", time_limit=600)).lease
    assert second.gen == 2
    assert service.authenticate(old) is None
    assert service.authenticate(old_access) is None
    got = service.authenticate(service.job_token(second))
    assert got is not None and got.gen == 2


def test_an_access_jwt_is_verified_once_and_still_expires(
        monkeypatch: pytest.MonkeyPatch) -> None:
    book = TokenBook(KEY)
    record = lease(7, 1, expires_at=None)
    token, life = book.access_token(record)
    verified: list[str] = []
    real = jwt.verify
    monkeypatch.setattr(jwt, "verify", lambda *a: verified.append(a[1]) or real(*a))
    for _ in range(3):  # an SDK sends the same token with every request
        assert book.parse(token) == TokenRef(7, 1) and book.matches(token, record)
    assert verified == [token]
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + life + 1)
    assert book.parse(token) is None  # remembered as verified, not as valid forever
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert book.parse(forged) is None  # a different string: verified, and refused
