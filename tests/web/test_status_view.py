"""The status page: HTML that refreshes itself until the change settles, JSON on request, honest 404s."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.urls import reverse

from deferred_confirmation import pipeline
from tests.conftest import own
from tests.testapp.models import Profile

REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+)">')
JSON = {"HTTP_ACCEPT": "application/json"}


def status_url(action_id) -> str:
    return reverse("confirmation:status", kwargs={"action_id": action_id})


def html_state(response) -> str:
    found = re.search(r'data-state="([a-z]+)"', response.content.decode())
    assert found, response.content[:500]
    return found.group(1)


def test_pending_action_refreshes_itself(stage, client):
    staged = stage()
    own(client, staged.action)
    response = client.get(status_url(staged.action.pk))
    assert response.status_code == 200
    assert html_state(response) == "notified"
    assert REFRESH.search(response.content.decode())
    assert "Waiting for confirmation" in response.content.decode()


def test_confirmed_but_not_yet_applied_still_refreshes(stage, client):
    staged = stage()
    own(client, staged.action)
    # No on-commit callbacks run here: the apply task stays queued, as while a worker is busy.
    assert pipeline.confirm(staged.token).status == "confirmed"
    response = client.get(status_url(staged.action.pk))
    assert html_state(response) == "confirmed"
    assert REFRESH.search(response.content.decode())
    data = client.get(status_url(staged.action.pk), **JSON).json()
    assert data["state"] == "confirmed"
    assert data["final"] is False
    assert data["applied_at"] is None
    assert data["confirmed_at"]


def test_applied_action_stops_refreshing(stage, client, run_on_commit):
    staged = stage()
    own(client, staged.action)
    with run_on_commit():
        assert pipeline.confirm(staged.token).status == "confirmed"
    response = client.get(status_url(staged.action.pk))
    assert response.status_code == 200
    assert html_state(response) == "applied"
    assert not REFRESH.search(response.content.decode())
    assert "refresh" not in response.content.decode()


def test_status_json(stage, client, run_on_commit):
    staged = stage()
    own(client, staged.action)
    data = client.get(status_url(staged.action.pk), **JSON)
    assert data.status_code == 200
    assert data["Content-Type"] == "application/json"
    assert data.json()["state"] == "notified"
    assert data.json()["failure_reason"] is None
    with run_on_commit():
        pipeline.confirm(staged.token)
    body = client.get(status_url(staged.action.pk), **JSON).json()
    assert body["state"] == "applied"
    assert body["failure_reason"] is None
    assert body["id"] == str(staged.action.pk)
    assert body["final"] is True
    assert body["applied_at"] and body["confirmed_at"]


def test_browser_accept_header_gets_html(stage, client):
    staged = stage()
    own(client, staged.action)
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = client.get(status_url(staged.action.pk), HTTP_ACCEPT=accept)
    assert response["Content-Type"].startswith("text/html")
    response = client.get(status_url(staged.action.pk), HTTP_ACCEPT="*/*")
    assert response["Content-Type"].startswith("text/html")


def test_failed_action_shows_its_reason(stage, client, run_on_commit):
    staged = stage()
    own(client, staged.action)
    Profile.objects.create(email=staged.new_email)  # someone took the address meanwhile
    with run_on_commit():
        assert pipeline.confirm(staged.token).status == "confirmed"
    staged.refresh()
    assert staged.action.state == "failed"
    assert staged.profile.email == staged.old_email
    data = client.get(status_url(staged.action.pk), **JSON).json()
    assert data["state"] == "failed"
    assert data["failure_reason"]
    assert data["failure_reason"] == staged.action.failure_reason
    assert "email" in data["failure_reason"].lower()
    page = client.get(status_url(staged.action.pk))
    assert page.status_code == 200
    assert html_state(page) == "failed"
    assert not REFRESH.search(page.content.decode())
    assert "could not be made" in page.content.decode()
    assert "Done" not in page.content.decode()


@pytest.mark.parametrize("state", ["expired", "cancelled", "locked"])
def test_other_terminal_states_do_not_refresh(stage, client, state):
    from deferred_confirmation.django_integration.models import DeferredAction

    staged = stage()
    own(client, staged.action)
    DeferredAction.objects.filter(pk=staged.action.pk).update(state=state)
    page = client.get(status_url(staged.action.pk))
    assert html_state(page) == state
    assert not REFRESH.search(page.content.decode())
    assert client.get(status_url(staged.action.pk), **JSON).json()["final"] is True


def test_unknown_action_is_404(db, client):
    missing = uuid.uuid4()
    page = client.get(status_url(missing))
    assert page.status_code == 404
    assert "not valid" in page.content.decode()
    data = client.get(status_url(missing), **JSON)
    assert data.status_code == 404
    assert "state" not in json.loads(data.content)


@pytest.mark.parametrize("segment", ["not-a-uuid", "1", "%00", "A" * 10_000, "%C3%A9" * 36,
                                     "12345678-1234-1234-1234-1234567890ab%00"])
def test_non_uuid_status_paths_are_404(db, client, segment):
    assert client.get(f"/confirm/status/{segment}/").status_code == 404
    assert client.get(f"/confirm/status/{segment}/", **JSON).status_code == 404


def test_status_page_is_private(stage, client):
    staged = stage()
    own(client, staged.action)
    for response in (client.get(status_url(staged.action.pk)),
                     client.get(status_url(staged.action.pk), **JSON),
                     client.get(status_url(uuid.uuid4()))):
        cache_control = response["Cache-Control"]
        for word in ("no-cache", "no-store", "must-revalidate", "private"):
            assert word in cache_control
        assert response["Referrer-Policy"] == "same-origin"


def test_status_view_only_reads(stage, client):
    staged = stage()
    own(client, staged.action)
    assert client.post(status_url(staged.action.pk)).status_code == 405
    assert staged.refresh().action.state == "notified"
