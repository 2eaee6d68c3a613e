"""Pure parts of the emulator: the sliding-window limiter, tokens, and the tenant file."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulator.identity import TokenIssuer, TokenProblem
from emulator.ratelimit import RateLimit, RateLimiter, retry_after_header
from emulator.tenant import DEFAULT_TENANT_PATH, load_tenant


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=60))
def test_limiter_never_admits_more_than_n_per_window(gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(3, 2.0), clock=clock)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        wait = limiter.try_acquire("k")
        if wait is None:
            admitted.append(clock.now)
        else:
            assert 0 < wait <= 2.0 + 1e-9
            assert int(retry_after_header(wait)) >= 1
    for t in admitted:
        assert sum(1 for u in admitted if t <= u < t + 2.0) <= 3


def test_limiter_wait_is_exact_and_keys_are_separate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(1, 10.0), clock=clock)
    assert limiter.try_acquire("a") is None
    clock.now += 4
    assert limiter.try_acquire("a") == 6.0
    assert limiter.try_acquire("b") is None
    clock.now += 6
    assert limiter.try_acquire("a") is None
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(9.2) == "10"


def test_tokens_expire_and_keep_the_identity() -> None:
    clock = FakeClock()
    issuer = TokenIssuer(tenant_id="t", default_client_id="mi", lifetime_seconds=60, clock=clock)
    token, claims = issuer.issue("https://graph.microsoft.com", None)
    assert claims["appid"] == claims["oid"] == "mi"
    check = issuer.check_authorization(f"Bearer {token}", "http://127.0.0.1:1234")
    assert check.valid
    assert check.claims is not None
    assert check.claims["tid"] == "t"
    clock.now += 61
    assert issuer.check_authorization(f"Bearer {token}", "http://127.0.0.1:1234").problem is TokenProblem.LIFETIME
    other = TokenIssuer(tenant_id="t", default_client_id="mi", lifetime_seconds=60, clock=clock)
    forged, _ = other.issue("https://graph.microsoft.com", None)
    assert issuer.check_authorization(f"Bearer {forged}", "http://x").problem is TokenProblem.SIGNATURE
    assert issuer.check_authorization(None, "http://x").problem is TokenProblem.EMPTY
    assert issuer.check_authorization("Basic abc", "http://x").problem is TokenProblem.EMPTY


def test_loopback_audiences_match_on_port() -> None:
    issuer = TokenIssuer(tenant_id="t", default_client_id="mi", lifetime_seconds=60)
    token, _ = issuer.issue("http://localhost:8080", None)
    assert issuer.check_authorization(f"Bearer {token}", "http://127.0.0.1:8080").valid
    assert issuer.check_authorization(f"Bearer {token}", "http://127.0.0.1:9090").problem is TokenProblem.AUDIENCE


def test_default_tenant_holds_the_seed_targets() -> None:
    tenant = load_tenant(DEFAULT_TENANT_PATH)
    expected = {
        (
            "c8c95753-f628-48e1-9fab-76c2d4cf624c",
            "3f7565a3-fde6-4e4d-bda8-1bb70aba3612",
        ): "ea807875-5618-4f0a-9125-0b46a05298ca",
        (
            "3e916d82-dd59-4944-824d-93092908fd8d",
            "264ea562-28cd-42b1-93e0-8de1f0560581",
        ): "6c409270-f78a-4bc6-af23-7cf3ab6482fe",
        (
            "4e116d82-dd59-4944-824d-93091408fd8d",
            "664ea562-18cd-42bb-33e0-8de1f0560581",
        ): "33f7c90d-bf71-41b1-bda6-aaf0ddbee5d8#V2",
    }
    for (sp, job_id), rule_id in expected.items():
        jobs = tenant.find_sp(sp)
        assert jobs is not None
        job = jobs[job_id]
        assert job.rule(rule_id) is not None
        assert job.recorded
    assert tenant.find_object("user", "CN=AdeleV,CN=Users,DC=corp,DC=chicago,DC=com") is not None
    group = tenant.find_object("Group", "8213fd99-d6b6-417b-8e13-af6334856215")
    assert group is not None
    assert set(group.members) == {"cbc86211-6ada-4803-b73f-8039cf56d8a2", "2bc86211-6ada-4803-b73f-8039cf56d8a2"}
