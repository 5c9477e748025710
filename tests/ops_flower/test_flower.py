"""Flower against a real worker: every task of a confirmation is traceable to its action, nothing secret shows.

A ``celery -A deferred_confirmation.workers worker`` and a ``celery -A deferred_confirmation.workers flower`` process
run against the test Redis and the shared test database (as in tests/workers/test_subprocess_worker.py).  A change is
saved, mailed by the worker, confirmed over HTTP and applied by the worker; then Flower's HTTP API (basic auth) and
``/metrics`` are read back.  Meanwhile a Redis MONITOR connection records what was published, so the test knows the real
sealed secret the worker passed from generate_token to send_notification, and can check it is on the broker (sealed)
but not in Flower.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.urls import reverse

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline import crypto
from deferred_confirmation.pipeline.lifecycle.delivery import SECRET_PURPOSE
from deferred_confirmation.pipeline.states import State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import free_port, purge_queues, stage_change, wait_for
from tests.workers.test_subprocess_worker import CELERY, Process, WorkerProcess, _shared_db_name

pytestmark = pytest.mark.subprocess

USER, PASSWORD = "flower-user", "flower-pass-0123"
FERNET = re.compile(r"gAAAAA[A-Za-z0-9_=-]{20,}")  # every Fernet token starts so (version 0x80, timestamp)
TASKS = ("confirmation.generate_token", "confirmation.send_notification", "confirmation.apply_action")


class FlowerProcess(Process):
    def __init__(self, tmp: Path, env: dict[str, str], *, cli_auth: bool = True):
        self.port = free_port()
        args = [CELERY, "-A", "deferred_confirmation.workers", "flower", f"--port={self.port}", "--address=127.0.0.1"]
        env = dict(env)
        if cli_auth:
            args.append(f"--basic-auth={USER}:{PASSWORD}")
            env.pop("FLOWER_BASIC_AUTH", None)
        else:  # Flower reads every option from FLOWER_<OPTION> too
            env["FLOWER_BASIC_AUTH"] = f"{USER}:{PASSWORD}"
        super().__init__(args, env, tmp / f"flower-{self.port}.log")

    def get(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if auth is not None:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def json(self, path: str):
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready():
            assert self.alive(), f"flower exited:\n{self.output()}"
            try:
                return self.get("/healthcheck", auth=None)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=timeout, what=f"flower to answer\n{self.output()}", interval=0.2)


class BrokerTap:
    """Every LPUSH to the test Redis database while running, seen through MONITOR: the messages as published."""

    def __init__(self, url: str):
        self.url = url
        self.db = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
        self.pushed: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BrokerTap:
        self._thread.start()
        assert self._ready.wait(5), "MONITOR did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        redis.Redis.from_url(self.url).ping()  # something for MONITOR to read, so the loop sees the flag
        self._thread.join(5)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url)
        with client.monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                command = monitor.next_command()
                if int(command.get("db", -1)) == self.db and command["command"].upper().startswith("LPUSH"):
                    self.pushed.append(command["command"])

    def sealed_secrets(self) -> set[str]:
        """The Fernet tokens inside the published message bodies (kombu's Redis transport base64-encodes them)."""
        found = set()
        for command in self.pushed:
            for body in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', command):
                found.update(FERNET.findall(base64.b64decode(body).decode(errors="replace")))
        return found


@pytest.fixture(scope="module")
def processes(django_db_setup, tmp_path_factory):
    if _shared_db_name() is None:
        pytest.skip("the SQLite test database is in memory; set TEST_SQLITE_NAME to a file to share it")
    workers.app.conf.task_always_eager = False
    purge_queues()
    tmp = tmp_path_factory.mktemp("flower")
    worker = WorkerProcess(tmp)
    flower = FlowerProcess(tmp, worker.env)
    try:
        flower.wait_ready()
        worker.wait_ready()
        yield worker, flower
    finally:
        flower.stop()
        worker.stop()
        purge_queues()


def _wait_until_flower_hears_the_worker(flower: FlowerProcess) -> None:
    """Flower subscribes to events once started: a maintenance task it sees succeed proves it is listening."""
    def heard():
        workers.app.send_task("confirmation.expire_stale", queue="confirmation.maintenance")
        tasks = flower.json("/api/tasks?taskname=confirmation.expire_stale&state=SUCCESS")
        return bool(tasks)

    wait_for(heard, timeout=20, interval=1.0, what=f"flower to see a task succeed\n{flower.output()}")


@pytest.mark.django_db(transaction=True)
def test_flower_traces_each_action_and_shows_no_secret(processes, client):
    worker, flower = processes
    _wait_until_flower_hears_the_worker(flower)
    new_address = f"flower-{uuid.uuid4().hex[:8]}@example.org"

    with BrokerTap(settings.CELERY_BROKER_URL) as tap:
        profile, action = stage_change("flower-old@example.org", new_address)
        [message] = wait_for(lambda: worker.mails_to(new_address), timeout=20,
                             what=f"the worker to write the mail\n{worker.output()}")
        token = link_token(message)
        wait_for(lambda: DeferredAction.objects.get(pk=action.pk).state == State.NOTIFIED, timeout=20,
                 what="the worker to record the send")
        response = client.post(reverse("confirmation:link", args=[token]))
        assert response.status_code == 302
        wait_for(lambda: DeferredAction.objects.get(pk=action.pk).state == State.APPLIED, timeout=20,
                 what=f"the worker to apply the change\n{worker.output()}")
    assert Profile.objects.get(pk=profile.pk).email == new_address

    # The real sealed secret travelled through the broker (and opens to the token in the mail).
    [sealed] = tap.sealed_secrets()
    assert crypto.open_sealed(SECRET_PURPOSE, sealed) == token

    action_id = str(action.pk)
    delivery = Delivery.objects.get(action=action)

    def all_seen():
        tasks = flower.json("/api/tasks")
        mine = {info["name"]: (task_id, info) for task_id, info in tasks.items()
                if action_id in f"{info.get('args')} {info.get('kwargs')}"}
        done = all(mine.get(name, (None, {}))[1].get("state") == "SUCCESS" for name in TASKS)
        return (tasks, mine) if done else None

    tasks, mine = wait_for(all_seen, timeout=15, interval=0.3, what=f"flower to see the three tasks succeed\n"
                                                                    f"{flower.output()}")

    # Traceable: each task names the action (apply_action by argument, the delivery tasks by keyword).
    infos = {name: flower.json(f"/api/task/info/{task_id}") for name, (task_id, _) in mine.items()}
    assert infos["confirmation.apply_action"]["args"] == repr((action_id,))
    assert infos["confirmation.generate_token"]["args"] == repr((delivery.pk, delivery.generation))
    assert infos["confirmation.send_notification"]["args"] == f"({delivery.pk}, {delivery.generation}, <sealed>)"
    for name in ("confirmation.generate_token", "confirmation.send_notification"):
        assert infos[name]["kwargs"] == repr({"action_id": action_id}), name
    for name, info in infos.items():
        assert info["state"] == "SUCCESS", name
        assert info["result"] == "True", name  # results are ignored; the event's repr is a bool
        assert info["worker"] == worker.hostname, name

    # Flower's search finds an action's tasks by its id.
    assert {info["name"] for info in flower.json(f"/api/tasks?search={action_id}").values()} == set(TASKS)

    # Nothing secret anywhere in Flower's JSON.
    everything = json.dumps([tasks, infos, flower.json("/api/task/types")])
    for secret in (token, sealed, new_address, "flower-old@example.org"):
        assert secret not in everything
    assert not FERNET.search(everything)
    assert "<sealed>" in everything

    # Prometheus metrics: events counted per task name (and, in Flower 2.2, served without authentication).
    status, metrics = flower.get("/metrics", auth=None)
    assert status == 200
    for name in TASKS:
        pattern = (rf'flower_events_total\{{task="{re.escape(name)}",type="task-succeeded",'
                   rf'worker="{re.escape(worker.hostname)}"\}} [1-9]')
        assert re.search(pattern, metrics), name
    assert 'flower_task_runtime_seconds_count{task="confirmation.apply_action"' in metrics
    for secret in (token, sealed, new_address, action_id):
        assert secret not in metrics

    # The API wants the credentials.
    assert flower.get("/api/tasks", auth=None)[0] == 401
    assert flower.get("/api/tasks", auth=(USER, "wrong"))[0] == 401
    assert flower.get(f"/api/task/info/{mine['confirmation.apply_action'][0]}", auth=None)[0] == 401


def test_flower_takes_basic_auth_from_the_environment(processes, tmp_path):
    """``FLOWER_BASIC_AUTH=user:pass celery -A deferred_confirmation.workers flower``: the credentials stay out of the
    process list."""
    worker, _flower = processes
    flower = FlowerProcess(tmp_path, worker.env, cli_auth=False)
    try:
        flower.wait_ready()
        assert flower.get("/api/workers", auth=None)[0] == 401
        assert flower.get("/api/task/types")[0] == 200
    finally:
        flower.stop()
