"""Who the failure throttle counts: the client the site's own proxies saw, never the proxy itself.

Threat: behind a TLS proxy every request arrives from the proxy's address.  A throttle counting by that
address lets one anonymous client lock every user out of their links and codes, again and again; one that
believes a client's own ``X-Forwarded-For`` lets the attacker escape it by writing a new address each time.
Each test goes through the Django test client and the real middleware stack; the last one runs parallel
requests on PostgreSQL with the counters in a real Redis, as web processes share them in production.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections import Counter
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from deferred_confirmation.django_integration.models import Delivery
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile
from tests.web.test_code_view import SENT, code_channel, code_url, wrong_code  # noqa: F401 (autouse fixture)

PROXY = "10.0.0.1"  # the TLS proxy in front of the site: every request's REMOTE_ADDR
ATTACKER, VICTIM = "203.0.113.5", "198.51.100.7"
LIMIT = 20  # FAILED_ATTEMPTS_LIMIT's default


def _conf(settings, **values) -> None:
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, **values}


def link_url(token: str) -> str:
    return reverse("confirmation:link", args=[token])


def random_link() -> str:
    """A well-formed link that leads nowhere (a guess)."""
    return link_url(secrets.token_urlsafe(32))


def _confirmed(staged) -> bool:
    return staged.refresh().action.state in ("confirmed", "applied")


# --- behind a proxy ------------------------------------------------------------------------------------
PROXY_SETUPS = {
    # one proxy appending the address it saw to X-Forwarded-For
    "forwarded-for": ({"TRUSTED_PROXY_COUNT": 1}, lambda ip: {"X-Forwarded-For": ip}),
    # a proxy that sets a header of its own (the client's X-Forwarded-For is then never read)
    "real-ip header": ({"TRUSTED_CLIENT_IP_HEADER": "X-Real-IP"},
                       lambda ip: {"X-Real-IP": ip, "X-Forwarded-For": f"192.0.2.{secrets.randbelow(250)}"}),
}


@pytest.mark.parametrize("victim_secret", ["link", "code"])
@pytest.mark.parametrize(("conf", "headers"), PROXY_SETUPS.values(), ids=PROXY_SETUPS.keys())
def test_25_wrong_posts_from_one_client_behind_the_proxy_never_block_a_second_client(
        stage, settings, conf, headers, victim_secret):
    _conf(settings, **conf)
    owner = get_user_model().objects.create_user("victim")
    staged = stage(channels=["email" if victim_secret == "link" else "testcode"], user=owner)
    attacker = Client(REMOTE_ADDR=PROXY)
    statuses = [attacker.post(random_link(), headers=headers(ATTACKER)).status_code for _ in range(25)]
    assert statuses == [404] * LIMIT + [429] * 5  # the attacker is stopped...

    victim = Client(REMOTE_ADDR=PROXY)  # ...and someone else behind the same proxy is not
    victim.force_login(owner)
    if victim_secret == "link":
        response = victim.post(link_url(staged.token), headers=headers(VICTIM))
    else:
        response = victim.post(code_url(staged.action.pk), {"code": SENT[-1][1]}, headers=headers(VICTIM))
    assert response.status_code == 302, response.content[:300]
    assert _confirmed(staged)


def test_a_forged_forwarded_for_prefix_does_not_escape_the_throttle(stage, settings):
    """With one trusted proxy only the last X-Forwarded-For entry (the proxy's own) counts: whatever the client
    writes before it, it stays the same client; the next client behind the proxy stays unaffected."""
    _conf(settings, TRUSTED_PROXY_COUNT=1)
    staged = stage()
    attacker = Client(REMOTE_ADDR=PROXY)
    statuses = [attacker.post(random_link(), headers={"X-Forwarded-For": f"1.1.{i}.1, {ATTACKER}"}).status_code
                for i in range(LIMIT + 1)]
    assert statuses == [404] * LIMIT + [429]
    for forged in ("1.1.1.1", VICTIM, "2001:db8::1", "garbage", ""):
        response = attacker.post(random_link(), headers={"X-Forwarded-For": f"{forged}, {ATTACKER}"})
        assert response.status_code == 429, forged

    victim = Client(REMOTE_ADDR=PROXY)
    assert victim.post(link_url(staged.token), headers={"X-Forwarded-For": VICTIM}).status_code == 302
    assert _confirmed(staged)


def test_proxies_that_write_a_port_still_tell_clients_apart(stage, settings):
    """Some load balancers write ``address:port``: still one client per address, not one "unknown" for all."""
    _conf(settings, TRUSTED_PROXY_COUNT=1)
    staged = stage()
    attacker = Client(REMOTE_ADDR=PROXY)
    statuses = [attacker.post(random_link(), headers={"X-Forwarded-For": f"{ATTACKER}:{40000 + i}"}).status_code
                for i in range(LIMIT + 1)]
    assert statuses == [404] * LIMIT + [429]
    v6 = Client(REMOTE_ADDR=PROXY)
    assert v6.post(random_link(), headers={"X-Forwarded-For": "[2001:db8:7::1]:443"}).status_code == 404

    victim = Client(REMOTE_ADDR=PROXY)
    assert victim.post(link_url(staged.token), headers={"X-Forwarded-For": f"{VICTIM}:51000"}).status_code == 302
    assert _confirmed(staged)


def test_wrong_links_from_a_shared_address_never_block_a_real_link_from_it(stage):
    """Behind one carrier NAT or office address, whoever posts wrong links is refused after the limit; a
    neighbour at the same address still confirms with their real link (it cannot be guessed, so it is never
    throttled)."""
    staged = stage()
    shared = "192.0.2.77"
    statuses = [Client(REMOTE_ADDR=shared).post(random_link()).status_code for _ in range(LIMIT + 5)]
    assert statuses == [404] * LIMIT + [429] * 5
    assert Client(REMOTE_ADDR=shared).post(link_url(staged.token)).status_code == 302
    assert _confirmed(staged)


# --- IPv6 ----------------------------------------------------------------------------------------------
def test_ipv6_clients_count_per_64_and_another_64_is_not_blocked(stage):
    """Whoever has a /64 has 2**64 addresses: every one of them is the same client."""
    staged = stage()
    statuses = [Client(REMOTE_ADDR=f"2001:db8:0:1::{i + 1:x}").post(random_link()).status_code
                for i in range(LIMIT + 1)]
    assert statuses == [404] * LIMIT + [429]
    same_network = Client(REMOTE_ADDR="2001:db8:0:1:ffff:ffff:ffff:fffe")
    assert same_network.post(random_link()).status_code == 429
    assert staged.refresh().action.state == "notified"

    neighbour = Client(REMOTE_ADDR="2001:db8:0:2::1")
    assert neighbour.post(link_url(staged.token)).status_code == 302
    assert _confirmed(staged)


# --- what counts ---------------------------------------------------------------------------------------
def test_opening_random_links_never_counts_only_a_wrong_secret_posted_does(stage, settings, client):
    _conf(settings, FAILED_ATTEMPTS_LIMIT=3)
    staged = stage()
    # Mail scanners, previews and curious people open links: no number of GETs is a guess.
    assert {client.get(random_link()).status_code for _ in range(60)} == {404}
    assert client.get(link_url(staged.token)).status_code == 200
    assert client.post(link_url(staged.token)).status_code == 302  # the GETs cost this client nothing
    assert _confirmed(staged)

    other = stage()
    assert [client.post(random_link()).status_code for _ in range(4)] == [404, 404, 404, 429]
    assert client.post(random_link()).status_code == 429
    assert client.post(link_url(other.token)).status_code == 302  # a real link is never refused: unguessable
    assert client.get(random_link()).status_code == 404  # opening a link is never refused


# --- parallel attempts ---------------------------------------------------------------------------------
def _shared_cache_location() -> str:
    """A Redis database on the tests' Redis server, never the broker's (derived from it: 8 further on)."""
    broker = urlsplit(django_settings.CELERY_BROKER_URL)
    db = (int(broker.path.strip("/") or 0) + 8) % 16
    return broker._replace(path=f"/{db}").geturl()


@pytest.fixture
def shared_throttle_cache(settings):
    """THROTTLE_CACHE in a real Redis, as web processes share it; this test's keys only, removed after."""
    location, prefix = _shared_cache_location(), f"dc-test-{uuid.uuid4().hex}"
    settings.CACHES = {**settings.CACHES, "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location, "KEY_PREFIX": prefix}}
    _conf(settings, THROTTLE_CACHE="throttle")
    yield
    client = redis.Redis.from_url(location)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


THREADS, ACTIONS, PARALLEL_LIMIT = 16, 4, 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel writers: PostgreSQL")
def test_parallel_wrong_codes_never_exceed_the_limit(eager, shared_throttle_cache, settings):
    """16 wrong codes at once from one client (4 per action, 3 allowed per action): at most the limit of 4 are
    checked against a secret; the rest get 429 without touching any action."""
    _conf(settings, FAILED_ATTEMPTS_LIMIT=PARALLEL_LIMIT)
    owner = get_user_model().objects.create_user("guesser")
    actions, codes = [], []
    for n in range(ACTIONS):
        form = ProfileEmailForm({"email": f"par{n}@example.org"},
                                instance=Profile.objects.create(email=f"par{n}-old@example.org"))
        assert form.is_valid(), form.errors
        actions.append(form.save(user=owner, channels=["testcode"]))  # tasks run at the commit (eager)
        codes.append(SENT[-1][1])
    assert len(SENT) == ACTIONS

    barrier = threading.Barrier(THREADS, timeout=30)
    statuses: list[int] = []

    def guess(index: int) -> None:
        try:
            guesser = Client(REMOTE_ADDR="192.0.2.9")
            guesser.force_login(owner)
            barrier.wait()
            statuses.append(guesser.post(code_url(actions[index % ACTIONS].pk),
                                         {"code": wrong_code(codes[index % ACTIONS])}).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(statuses) == THREADS, statuses

    counted = Counter(statuses)
    attempts = list(Delivery.objects.filter(action__in=actions).values_list("attempts", flat=True))
    assert sum(attempts) <= PARALLEL_LIMIT, (attempts, counted)
    assert all(n <= 3 for n in attempts), attempts  # each action's MAX_ATTEMPTS
    assert THREADS - counted[429] <= PARALLEL_LIMIT, counted
    assert set(counted) <= {400, 403, 429}, counted
