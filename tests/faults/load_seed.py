"""Seed the example site's database for the load test (tests/faults/test_load.py), under example.settings.

``python -m tests.faults.load_seed OUT.json --clients 200 --seeded 9800 --expired 0.15``

Creates the site's tables (migrate), one signed-in user per load client (a session row, as a returning user
has: the clients never post a password, whose deliberately slow hash would dominate the run), and ``seeded``
email changes of their own users as the worker leaves them after mailing the link: a ``notified`` action,
its delivery ``sent`` with the digest of a fresh link token.  Each is built from a validated EmailChangeForm
with the functions ``stage()`` itself uses (the form's dotted path, its stored input, the target's
fingerprint, the channel's token and digest), bulk-inserted because staging and mailing 10,000 actions one
by one would take minutes: that path is loaded separately, by every client staging one change over HTTP.  A
share of the actions is past its ``valid_until`` (the expiry sweep has not run yet).

Writes the sessions, the tokens and each action's kind to OUT.json for the test process."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from deferred_confirmation.django_integration.models import DeferredAction, Delivery  # noqa: E402
from deferred_confirmation.pipeline import formdata  # noqa: E402
from deferred_confirmation.pipeline.channels import get_channel  # noqa: E402
from deferred_confirmation.pipeline.lifecycle.staging import form_path  # noqa: E402
from deferred_confirmation.pipeline.states import DeliveryStatus, State  # noqa: E402
from example.accounts.forms import EmailChangeForm  # noqa: E402

User = get_user_model()
BATCH = 1000


def seed(clients: int, seeded: int, expired_share: float, rng: random.Random) -> dict:
    call_command("migrate", verbosity=0, interactive=False)
    password = make_password("load-test-password")  # once: the hasher is slow on purpose
    client_users = User.objects.bulk_create(
        [User(username=f"client{i}", email=f"client{i}@load.example", password=password) for i in range(clients)])
    sessions = []
    for user in client_users:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append({"user_id": user.pk, "username": user.username, "session": store.session_key})

    channel = get_channel("email")
    path = form_path(EmailChangeForm)
    content_type = ContentType.objects.get_for_model(User)
    now = timezone.now()
    actions = []
    for start in range(0, seeded, BATCH):
        count = min(BATCH, seeded - start)
        users = User.objects.bulk_create([User(username=f"owner{start + i}", email=f"owner{start + i}@load.example",
                                               password=password) for i in range(count)])
        rows, deliveries = [], []
        for user in users:
            new_email = f"new-{user.username}@load.example"
            form = EmailChangeForm({"email": new_email}, instance=User(pk=user.pk, email=user.email,
                                                                       username=user.username))
            if not form.is_valid():
                raise SystemExit(f"seed form invalid: {form.errors.as_text()}")
            expired = rng.random() < expired_share
            until = now - timedelta(hours=1) if expired else now + timedelta(days=1)
            action = DeferredAction(
                form_class=path, form_data=formdata.dump(form), form_prefix=form.prefix,
                content_type=content_type, object_pk=str(user.pk),
                target_fingerprint=formdata.fingerprint(EmailChangeForm, user), user=user,
                description=f"Change your email address to {new_email}", channel_policy="any",
                state=State.NOTIFIED, created_at=now - timedelta(minutes=5), valid_until=until)
            token = channel.make_secret()
            delivery = Delivery(action=action, channel="email", recipient=new_email, status=DeliveryStatus.SENT,
                                expires_at=until, sent_at=now - timedelta(minutes=4), created_at=action.created_at)
            delivery.secret_digest = channel.digest(delivery, token)
            rows.append(action)
            deliveries.append(delivery)
            actions.append({"id": str(action.pk), "token": token, "user_id": user.pk, "email": user.email,
                            "new_email": new_email, "expired": expired})
        with transaction.atomic():
            DeferredAction.objects.bulk_create(rows)
            Delivery.objects.bulk_create(deliveries)
    return {"clients": sessions, "actions": actions,
            "session_cookie": settings.SESSION_COOKIE_NAME, "csrf_cookie": settings.CSRF_COOKIE_NAME}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seeded", type=int, default=9800)
    parser.add_argument("--expired", type=float, default=0.15, help="share of seeded actions past due")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    plan = seed(args.clients, args.seeded, args.expired, random.Random(args.seed))
    with open(args.out, "w") as out:
        json.dump(plan, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
