"""Hostile input: property-based tests of everything a stranger can send.

Tokens (link view GET/POST, ``deferred_confirmation.pipeline.confirm``), codes and amounts (code and deposits pages,
``deferred_confirmation.pipeline.confirm`` with an action), form payloads and stored form data of a DeferredForm,
replayed and cross-action secrets, brute force across many actions from one client, open redirects through ``next``, and
HTML in descriptions.  Every answer must be a clear 4xx page (never a 500, never a success) and nothing may be confirmed
or applied.

The channels are the real ones: email, SMS against the fake Twilio (example.fakes.twilio) and micro-deposits on the
ledger backend; tasks run eagerly when the staging transaction's on-commit callbacks run.
"""

from __future__ import annotations

import itertools
import string
import uuid
from datetime import timedelta
from urllib.parse import quote

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import caches
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import amounts, formdata, tokens
from deferred_confirmation.pipeline.conf import app_settings
from example.fakes.twilio import FakeTwilio
from tests.channels.microdeposit.conftest import IBAN_ACCOUNT, exported_amounts
from tests.channels.microdeposit.forms import BankAccountForm
from tests.channels.sms.conftest import FROM, code_in
from tests.channels.sms.forms import ProfilePhoneForm
from tests.conftest import link_token, own
from tests.testapp.forms import ProfileEmailForm, ProfileForm
from tests.testapp.models import Profile

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
REFUSED = {400, 403, 404, 405, 409, 410, 429}
EVIL = ("https://evil.example", "//evil.example", "/\\evil.example", "https:evil.example")
HTML = '<script>alert("dc")</script><img src=x onerror=alert(1)>&amp;"\''
_numbers = itertools.count(1)

# Text as hostile as it gets: any code point (lone surrogates, NUL, RTL marks, emoji), sometimes huge.
any_text = st.one_of(st.text(max_size=80), st.text(max_size=5000, alphabet=st.characters(codec=None)),
                     st.sampled_from(["", " ", "\x00", "\x00" * 43, "A" * 43, "a" * 100_000, "../../etc/passwd",
                                      "%00", "%2F", "<script>", "' OR 1=1 --", "null", "[]", "{}", "١٢٣٤٥٦",
                                      "１２３４５６", "12 34 56", "0x1e240", "1e5", "-12345", "+123456"]))
link_shaped = st.from_regex(tokens.LINK_TOKEN_RE, fullmatch=True)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text | st.binary(max_size=50),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(
        st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
# What jsonb can hold (no NUL, no lone surrogate): the stored-data fuzz tampers the row directly.
json_text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3), max_leaves=8)


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def channels(settings, fake_twilio):
    """email + sms (fake Twilio) + microdeposit (ledger); ``channels(sms=..., microdeposit=...)`` sets attempts."""

    def configure(sms: int = 5, microdeposit: int = 3) -> None:
        settings.DEFERRED_CONFIRMATION = {
            **settings.DEFERRED_CONFIRMATION,
            "RETRY_BACKOFF_MAX": timedelta(seconds=1),
            "CHANNELS": {
                "email": {"RESEND_COOLDOWN": None},
                "sms": {"MAX_ATTEMPTS": sms, "RESEND_COOLDOWN": None, "OPTIONS": {
                    "ACCOUNT_SID": fake_twilio.account_sid, "AUTH_TOKEN": fake_twilio.auth_token, "FROM": FROM,
                    "BASE_URL": fake_twilio.url, "TIMEOUT": 2}},
                "microdeposit": {"MAX_ATTEMPTS": microdeposit},
            },
        }

    configure()
    return configure


@pytest.fixture
def stage(db, eager, channels, fake_twilio, django_capture_on_commit_callbacks, client):
    """``stage.email()``, ``stage.sms()``, ``stage.deposits()``: (action, secret) with the secret as received.
    Each action belongs to the test's ``client`` (its session saved it, or it is signed in as the ``user``
    given to ``save()``): the hostile input reaches the pages themselves, not just their 404."""

    class Stage:
        @staticmethod
        def _save(form, **kwargs) -> DeferredAction:
            assert form.is_valid(), form.errors
            with django_capture_on_commit_callbacks(execute=True):
                action = form.save(**kwargs)
            action.refresh_from_db()
            assert action.state == "notified", action.state
            own(client, action)
            return action

        def email(self, **kwargs) -> tuple[DeferredAction, str]:
            n = next(_numbers)
            profile = Profile.objects.create(email=f"hostile-old{n}@example.org")
            action = self._save(ProfileEmailForm({"email": f"hostile-new{n}@example.org"}, instance=profile),
                                **kwargs)
            return action, link_token(mail.outbox[-1])

        def sms(self, **kwargs) -> tuple[DeferredAction, str]:
            profile = Profile.objects.create(email=f"hostile-sms{next(_numbers)}@example.org")
            phone = f"+1 (202) 555-01{next(_numbers) % 100:02d}"  # one per action: the per-recipient send limit
            action = self._save(ProfilePhoneForm({"phone": phone}, instance=profile), **kwargs)
            return action, code_in(fake_twilio.messages[-1]["body"])

        def deposits(self, **kwargs) -> tuple[DeferredAction, tuple[int, int]]:
            profile = Profile.objects.create(email=f"hostile-bank{next(_numbers)}@example.org")
            action = self._save(BankAccountForm(dict(IBAN_ACCOUNT), instance=profile), **kwargs)
            return action, exported_amounts(action)

    return Stage()


def link_url(token: str) -> str:
    """The link view's URL for any text, percent-encoded the way a browser would (lone surrogates kept)."""
    return "/confirm/" + quote(token, safe="", errors="surrogatepass") + "/"


def code_url(action) -> str:
    return reverse("confirmation:code", args=[action.pk])


def deposits_url(action) -> str:
    return reverse("confirmation:deposits", args=[action.pk])


def fresh_throttle() -> None:
    caches[app_settings.THROTTLE_CACHE].clear()


def assert_refused(response, *allowed: int) -> None:
    allowed_set = set(allowed) or REFUSED
    assert response.status_code in allowed_set, (response.status_code, response.content[:300])
    assert response.content, "a refusal renders a page"


def unchanged(action: DeferredAction, state: str = "notified") -> None:
    action.refresh_from_db()
    assert action.state == state and action.confirmed_at is None and action.applied_at is None


def cents(pair: tuple[int, int]) -> tuple[str, str]:
    return tuple(f"0.{c:02d}" for c in pair)  # type: ignore[return-value]


# --- tokens -----------------------------------------------------------------------------------------------
def test_link_view_refuses_any_other_token(stage, client):
    action, token = stage.email()
    seen = {"get": 0, "post": 0}

    @FUZZ
    @given(st.one_of(any_text, link_shaped))
    def check(candidate):
        assume(candidate != token)
        fresh_throttle()
        for method in ("get", "post"):
            response = getattr(client, method)(link_url(candidate))
            assert_refused(response, 400, 404)
            seen[method] += 1

    check()
    unchanged(action)
    # A token one character off the real one is unknown too.
    for i in (0, 21, 42):
        fresh_throttle()
        other = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        assert_refused(client.post(link_url(other)), 404)
        assert pipeline.confirm(other).status == "invalid"
    unchanged(action)
    assert seen["get"] >= 40 and seen["post"] >= 40


def test_pipeline_confirm_never_raises_for_any_link_input(stage):
    action, token = stage.email()

    @FUZZ
    @given(st.one_of(anything, link_shaped))
    def check(candidate):
        assume(candidate != token)
        result = pipeline.confirm(candidate)
        assert result.status == "invalid" and result.action is None and not result.ok

    check()
    unchanged(action)


# --- codes and amounts ------------------------------------------------------------------------------------
def test_code_page_refuses_anything_but_the_code(stage, channels, client):
    channels(sms=100_000)  # the fuzz must not lock the action: every parseable wrong code costs an attempt
    action, code = stage.sms()

    @FUZZ
    @given(any_text)
    def check(typed):
        assume("".join(typed.split()).replace("-", "") != code)
        fresh_throttle()
        assert_refused(client.post(code_url(action), {"code": typed}), 400)

    check()
    unchanged(action)
    fresh_throttle()
    assert_refused(client.post(code_url(action), {"code": "1" * 3_000_000}), 400)  # over DATA_UPLOAD_MAX
    assert_refused(client.post(code_url(action), {}), 400)
    assert_refused(client.post(code_url(action), {"code": ["123456", "654321"]}), 400)
    unchanged(action)


def test_deposits_page_refuses_anything_but_the_amounts(stage, channels, client):
    channels(microdeposit=100_000)
    action, pair = stage.deposits()

    @FUZZ
    @given(any_text, any_text)
    def check(first, second):
        assume(amounts.parse_pair([first, second]) != pair)
        fresh_throttle()
        assert_refused(client.post(deposits_url(action), {"first": first, "second": second}), 400)

    check()
    unchanged(action)


def test_pipeline_confirm_with_an_action_never_raises(stage, channels):
    channels(sms=100_000, microdeposit=100_000)
    sms_action, code = stage.sms()
    md_action, pair = stage.deposits()
    garbage_refs = st.one_of(anything, st.uuids(), st.uuids().map(str))

    @FUZZ
    @given(anything, garbage_refs)
    def check(secret, ref):
        assume(secret != code and amounts.parse_pair(secret) != pair)
        for action in (sms_action, md_action):
            result = pipeline.confirm(secret, action=action.pk)
            assert result.status == "invalid" and not result.ok
            assert result.action is not None and result.action.pk == action.pk
        result = pipeline.confirm(secret, action=ref)
        assert result.status == "invalid" and not result.ok

    check()
    unchanged(sms_action)
    unchanged(md_action)


@FUZZ
@given(st.integers(1, 99), st.integers(1, 99),
       st.sampled_from(["0.{a:02d}, 0.{b:02d}", "{a} {b}", "$0.{a:02d} / $0.{b:02d}", "0,{a:02d}; 0,{b:02d}",
                        " {a}\t{b} "]))
def test_amounts_parse_every_documented_spelling_and_nothing_else(a, b, spelling):
    parsed = amounts.parse_pair(spelling.format(a=a, b=b))
    assert parsed == (None if a == b else tuple(sorted((a, b))))


@FUZZ
@given(anything)
def test_amounts_parser_only_returns_two_distinct_cents(value):
    parsed = amounts.parse_pair(value)
    assert parsed is None or (len(parsed) == 2 and 1 <= parsed[0] < parsed[1] <= 99)
    single = amounts.parse_cents(value)
    assert single is None or (type(single) is int and 1 <= single <= 99)


# --- form payloads ------------------------------------------------------------------------------------------
class AnyTextForm(forms.Form):
    text = forms.CharField(required=False, strip=False, validators=[])
    many = forms.MultipleChoiceField(required=False, choices=[])


@FUZZ
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=2000),
       st.lists(st.text(max_size=20), max_size=5))
@pytest.mark.django_db
def test_stored_form_data_round_trips_unicode_huge_and_nul(text, many):
    """What a form was given is what it gets back after the database (jsonb cannot hold NUL: NUL_SAFE)."""
    from django.utils.datastructures import MultiValueDict

    data = MultiValueDict({"text": [text], "many": many, "csrfmiddlewaretoken": ["x"]})
    stored = formdata.dump(AnyTextForm(data))
    assert "csrfmiddlewaretoken" not in stored
    action = DeferredAction.objects.create(form_class="tests.testapp.forms.ProfileForm", form_data=stored,
                                           description="round trip", valid_until=timezone.now())
    action.refresh_from_db()
    loaded = formdata.load(action.form_data)
    assert loaded.getlist("text") == [text]
    assert loaded.getlist("many") == many


def test_a_deferred_form_takes_any_payload_or_says_why_not(stage, django_capture_on_commit_callbacks):
    applied = failed = invalid = 0

    @FUZZ
    @given(st.one_of(any_text, st.text(max_size=50)), st.lists(any_text, max_size=2))
    def check(nickname, tags):
        nonlocal applied, failed, invalid
        profile = Profile.objects.create(email=f"payload{next(_numbers)}@example.org")
        form = ProfileForm({"email": profile.email, "nickname": nickname, "tags": tags}, instance=profile)
        try:
            valid = form.is_valid()
        except UnicodeEncodeError:  # a lone surrogate: Python's own refusal, before our code
            return
        if not valid:
            invalid += 1
            assert form.errors
            return
        with django_capture_on_commit_callbacks(execute=True):
            action = form.save()
        token = link_token(mail.outbox[-1])
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.confirm(token).ok
        action.refresh_from_db()
        profile.refresh_from_db()
        if action.state == "applied":
            applied += 1
            assert profile.nickname == form.cleaned_data["nickname"]
        else:
            failed += 1
            assert action.state == "failed" and action.failure_reason

    check()
    assert invalid > 0 and applied > 0


def test_wrong_json_types_in_stored_form_data_fail_cleanly(stage, client, django_capture_on_commit_callbacks):
    outcomes: dict[str, int] = {"applied": 0, "failed": 0}
    malformed = st.one_of(
        json_values.filter(lambda v: v is not None),  # SQL NULL is refused by the column itself
        st.dictionaries(st.sampled_from(["email", "nickname", "tags", "category", "x"]), json_values, max_size=4),
        st.sampled_from([{"email": [{"__sealed__": "gAAAAAforged"}]}, {"email": [{"__b64__": "!!not base64"}]},
                         {"email": [{"__b64__": 5}]}, {"email": [{"__sealed__": None}]}, {"email": 5},
                         {"email": [[["deep"]]]}, {"tags": ["999999"]}, {"category": ["not-a-pk"]}]))

    @FUZZ
    @given(malformed)
    def check(stored):
        with transaction.atomic():  # a savepoint per example: a failing example leaves the next one a clean slate
            run(stored)

    def run(stored):
        action, token = stage.email()
        profile = Profile.objects.get(pk=action.object_pk)
        before = Profile.objects.filter(pk=profile.pk).values().get()
        DeferredAction.objects.filter(pk=action.pk).update(form_data=stored)
        with django_capture_on_commit_callbacks(execute=True):
            result = pipeline.confirm(token)
        assert result.ok  # the secret was right; what is stored decides the apply
        action.refresh_from_db()
        assert action.state in ("applied", "failed"), action.state
        outcomes[action.state] += 1
        if action.state == "failed":
            assert action.failure_reason.strip()
            assert Profile.objects.filter(pk=profile.pk).values().get() == before
        status = client.get(reverse("confirmation:status", args=[action.pk]), HTTP_ACCEPT="application/json")
        assert status.status_code == 200 and status.json()["state"] == action.state
        assert client.get(reverse("confirmation:status", args=[action.pk])).status_code == 200

    check()
    assert outcomes["failed"] > 0


# --- replayed and cross-action secrets ----------------------------------------------------------------------
def attempts(action) -> int:
    return sum(Delivery.objects.filter(action=action).values_list("attempts", flat=True))


def test_cross_action_and_replayed_secrets(stage, channels, client):
    channels(sms=5, microdeposit=3)
    a, code_a = stage.sms()
    b, code_b = stage.sms()
    c, pair_c = stage.deposits()
    d, pair_d = stage.deposits()
    _e, token_e = stage.email()
    assert code_a != code_b and pair_c != pair_d

    # A's code typed for B: parses, so B pays one attempt.
    assert_refused(client.post(code_url(b), {"code": code_a}), 400)
    assert attempts(b) == 1
    # Input that cannot be a code costs nothing: a link token, amounts, a short code.
    for typed in (token_e, "0.32, 0.45", code_a[:5], code_a + "0"):
        assert_refused(client.post(code_url(b), {"code": typed}), 400)
        assert pipeline.confirm(typed, action=b.pk).status == "invalid"
    assert attempts(b) == 1
    # C's amounts for D: D pays one attempt; a code is not amounts, nothing counted.
    assert_refused(client.post(deposits_url(d), dict(zip(("first", "second"), cents(pair_c), strict=True))), 400)
    assert attempts(d) == 1
    assert pipeline.confirm(code_a, action=d.pk).status == "invalid"
    assert pipeline.confirm(pair_c, action=a.pk).status == "invalid"  # amounts are not a code
    assert attempts(d) == 1 and attempts(a) == 0
    # A's code on A and E's link work once; a replay is 409 and changes nothing.
    assert client.post(code_url(a), {"code": code_a}).status_code == 302
    assert_refused(client.post(code_url(a), {"code": code_a}), 409)
    assert pipeline.confirm(code_a, action=a.pk).status == "already_used"
    assert client.post(link_url(token_e)).status_code == 302
    assert_refused(client.post(link_url(token_e)), 409)
    assert_refused(client.get(link_url(token_e)), 409)
    # A's code for B after A was used: still just a wrong code for B.
    assert_refused(client.post(code_url(b), {"code": code_a}), 400)
    assert attempts(b) == 2
    # A link token used as the "action" of a code, an action id used as a token.
    assert pipeline.confirm(code_b, action=token_e).status == "invalid"
    assert_refused(client.post(link_url(str(b.pk))), 404)
    for action in (b, c, d):
        unchanged(action)


def test_a_stranger_gets_404_whatever_it_sends_to_someone_elses_action(stage, channels, fake_twilio, client):
    """The action's id alone grants nothing: a client that neither saved the action nor is signed in as its
    user gets, for any input and even the right secret, the very 404 of an id that does not exist; nothing is
    counted, sent, locked or shown, and the owner on the same address is not throttled by it."""
    channels(sms=5, microdeposit=3)
    sms_action, code = stage.sms(description="Stranger: new phone")
    md_action, pair = stage.deposits(description="Stranger: new bank account")
    anonymous = Client()  # same address as the owner's ``client``
    signed_in = Client()
    signed_in.force_login(get_user_model().objects.create_user("eve", password="x" * 12))
    strangers = (anonymous, signed_in)
    texts_sent = len(fake_twilio.messages)
    missing = uuid.uuid4()
    # What each of them is answered for an id that does not exist.
    not_found = {(stranger, view): stranger.post(reverse(f"confirmation:{view}", args=[missing]), {"code": "1"})
                 for stranger in strangers for view in ("code", "deposits")}

    @FUZZ
    @given(any_text, any_text)
    def check(first, second):
        for stranger in strangers:
            for view, url, data in (("code", code_url(sms_action), {"code": first}),
                                    ("deposits", deposits_url(md_action), {"first": first, "second": second})):
                response = stranger.post(url, data)
                assert_refused(response, 404)
                assert response.content == not_found[stranger, view].content

    check()
    for stranger in strangers:
        assert_refused(stranger.post(code_url(sms_action), {"code": code}), 404)
        assert_refused(stranger.post(deposits_url(md_action), dict(zip(("first", "second"), cents(pair),
                                                                         strict=True))), 404)
        for action in (sms_action, md_action):
            for url in (code_url(action), deposits_url(action), reverse("confirmation:status", args=[action.pk])):
                response = stranger.get(url)
                assert_refused(response, 404)
                assert action.description not in response.content.decode()
            response = stranger.get(reverse("confirmation:status", args=[action.pk]), HTTP_ACCEPT="application/json")
            assert (response.status_code, response.json()) == (404, {"error": "not_found"})
            assert_refused(stranger.post(reverse("confirmation:resend", args=[action.pk])), 404)
    for action in (sms_action, md_action):
        unchanged(action)
        assert attempts(action) == 0
    assert len(fake_twilio.messages) == texts_sent  # no resend went out
    # None of it counted against the address: the owner's right code still goes through at once.
    assert client.post(code_url(sms_action), {"code": code}).status_code == 302


def test_a_resent_secret_kills_the_old_one(stage, client):
    action, old = stage.email()
    result = pipeline.resend(action)
    assert result.sent, result
    assert_refused(client.post(link_url(old)), 404)
    unchanged(action)


# --- brute force across many actions ------------------------------------------------------------------------
def test_the_global_throttle_holds_across_actions(stage, channels):
    channels(sms=50, microdeposit=50)  # per-action limits out of the way: only the global throttle counts
    limit = app_settings.FAILED_ATTEMPTS_LIMIT
    sms = [stage.sms() for _ in range(3)]
    md_action, pair = stage.deposits()
    email_action, token = stage.email()
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for action in [a for a, _ in sms] + [md_action, email_action]:
        own(attacker, action)  # the attacker saved them (say, from a stolen session) but never got the secrets

    statuses = []
    for i in range(limit):
        kind = i % 3
        if kind == 0:
            action, code = sms[i % len(sms)]
            wrong = f"{(int(code) + 1 + i) % 1_000_000:06d}"
            statuses.append(attacker.post(code_url(action), {"code": wrong}).status_code)
        elif kind == 1:
            statuses.append(attacker.post(link_url(tokens.make_link_token())).status_code)
        else:
            bad = ((pair[0] % 99) + 1, (pair[1] % 99) + 1)
            if bad[0] == bad[1] or tuple(sorted(bad)) == pair:
                bad = (pair[0] % 98 + 1, pair[0] % 98 + 2)
            statuses.append(attacker.post(deposits_url(md_action),
                                          dict(zip(("first", "second"), cents(bad), strict=True))).status_code)
    assert 429 not in statuses and set(statuses) <= {400, 404}, statuses

    # Past the limit: 429 for every code and every wrong link, the right codes and amounts included.
    for action, code in sms:
        response = attacker.post(code_url(action), {"code": code})
        assert_refused(response, 429)
        assert response["Retry-After"]
    assert_refused(attacker.post(deposits_url(md_action), dict(zip(("first", "second"), cents(pair),
                                                                     strict=True))), 429)
    assert_refused(attacker.post(link_url(tokens.make_link_token())), 429)
    assert attacker.get(link_url(token)).status_code == 200  # opening a link confirms nothing: never refused
    for action, _ in sms:
        unchanged(action)
    unchanged(md_action)
    unchanged(email_action)
    # A real link is never refused: 256 bits cannot be guessed, so the throttle only stops wrong ones.
    assert attacker.post(link_url(token)).status_code == 302

    # Another client is not blocked by the attacker's failures.
    honest = Client(REMOTE_ADDR="198.51.100.9")
    own(honest, sms[0][0])
    assert honest.post(code_url(sms[0][0]), {"code": sms[0][1]}).status_code == 302
    sms[0][0].refresh_from_db()
    assert sms[0][0].state in ("confirmed", "applied")


def test_the_throttle_counts_a_signed_in_user_across_addresses(stage, channels):
    channels(sms=50)
    limit = app_settings.FAILED_ATTEMPTS_LIMIT
    user = get_user_model().objects.create_user("mallory", password="x" * 12)
    action, code = stage.sms(user=user)  # mallory's own change: every device she signs in on may try codes
    for i in range(limit):
        client = Client(REMOTE_ADDR=f"192.0.2.{i + 1}")
        client.force_login(user)
        wrong = f"{(int(code) + 1 + i) % 1_000_000:06d}"
        assert_refused(client.post(code_url(action), {"code": wrong}), 400)
    client = Client(REMOTE_ADDR="192.0.2.250")
    client.force_login(user)
    assert_refused(client.post(code_url(action), {"code": code}), 429)
    unchanged(action)


# --- open redirects -----------------------------------------------------------------------------------------
def test_no_view_follows_a_next_parameter(stage, client):
    email_action, token = stage.email()
    sms_action, code = stage.sms()
    md_action, pair = stage.deposits()
    urls = [link_url(token), link_url(tokens.make_link_token()), code_url(sms_action), deposits_url(md_action),
            reverse("confirmation:status", args=[email_action.pk]),
            reverse("confirmation:resend", args=[sms_action.pk])]
    checked = 0
    for url in urls:
        for evil in EVIL:
            for method in ("get", "post"):
                fresh_throttle()
                response = getattr(client, method)(f"{url}?next={quote(evil, safe='')}",
                                                   {"next": evil, "redirect_to": evil, "return_to": evil}
                                                   if method == "post" else None)
                checked += 1
                assert response.status_code != 500
                location = response.get("Location", "")
                assert "evil" not in location, (url, method, location)
                assert "evil.example" not in response.content.decode(errors="replace"), (url, method)
    # The successful posts redirect to their own status page, whatever ``next`` says.
    email_action, token = stage.email()
    sms_action, code = stage.sms()
    md_action, pair = stage.deposits()
    for url, data, action in ((link_url(token), {}, email_action),
                              (code_url(sms_action), {"code": code}, sms_action),
                              (deposits_url(md_action), dict(zip(("first", "second"), cents(pair), strict=True)),
                               md_action)):
        fresh_throttle()
        response = client.post(f"{url}?next=https://evil.example", {**data, "next": "//evil.example"})
        assert response.status_code == 302
        assert response["Location"] == reverse("confirmation:status", args=[action.pk])
        checked += 1
    assert checked == len(urls) * len(EVIL) * 2 + 3


# --- HTML in descriptions ------------------------------------------------------------------------------------
def test_html_in_descriptions_is_escaped_everywhere(stage, client, fake_twilio):
    email_action, token = stage.email(description=HTML)
    mail_message = mail.outbox[-1]
    sms_action, _code = stage.sms(description=HTML)
    md_action, _pair = stage.deposits(description=HTML)
    raw_markers = ('<script>alert("dc")', "<img src=x", "onerror=alert(1)>")

    def clean(text: str, where: str) -> None:
        for marker in raw_markers:
            assert marker not in text, (where, marker)

    html_bodies = [content for content, mimetype in getattr(mail_message, "alternatives", [])
                   if mimetype == "text/html"]
    assert html_bodies, "the confirmation mail has an HTML body"
    for body in html_bodies:
        clean(body, "email html")
    assert "&lt;script" not in mail_message.body  # the text part is plain text: not HTML-escaped

    pages = {
        "link": client.get(link_url(token)),
        "code": client.get(code_url(sms_action)),
        "deposits": client.get(deposits_url(md_action)),
    }
    for action in (email_action, sms_action, md_action):
        pages[f"status {action.pk}"] = client.get(reverse("confirmation:status", args=[action.pk]))
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.org", "x" * 12))
    pages["admin actions"] = admin.get(reverse("admin:confirmation_deferredaction_changelist"))
    pages["admin deliveries"] = admin.get(reverse("admin:confirmation_delivery_changelist"))
    for action in (email_action, sms_action, md_action):
        pages[f"admin {action.pk}"] = admin.get(
            reverse("admin:confirmation_deferredaction_change", args=[action.pk]))
    shown = 0
    for where, response in pages.items():
        assert response.status_code == 200, (where, response.status_code)
        body = response.content.decode()
        clean(body, where)
        shown += "&lt;script&gt;" in body
    assert shown >= 4, "the description is shown (escaped) on the pages and in the admin"
    # The error page after a wrong code, with the description's action in context.
    fresh_throttle()
    response = client.post(code_url(sms_action), {"code": "<script>alert(1)</script>"})
    assert_refused(response, 400)
    clean(response.content.decode(), "code error page")


@FUZZ
@given(description=st.text(alphabet=st.sampled_from(list('<>&"\'/=` ') + list(string.ascii_letters)),
                           min_size=1, max_size=60))
def test_any_markup_in_a_description_is_escaped(description, stage, client):
    description = f"<dc-{description}"  # a tag no page has of its own
    action, token = stage.email(description=description)
    from django.utils.html import escape

    for response in (client.get(link_url(token)), client.get(reverse("confirmation:status", args=[action.pk]))):
        assert response.status_code == 200
        body = response.content.decode()
        assert "<dc-" not in body
        assert escape(description) in body


@pytest.mark.parametrize("sealed", [None, 5, ["x"], {"a": 1}, "gAAAAAforged", "\u00e9t\u00e9"])
def test_a_tampered_sealed_value_is_malformed_data_not_a_crash(sealed):
    """Regression: a non-string sealed value raised AttributeError, crashing apply_action (action stuck confirmed)."""
    with pytest.raises(ValueError, match="cannot be opened"):
        formdata.load({"email": [{formdata.SEALED: sealed}]})
