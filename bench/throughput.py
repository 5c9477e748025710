"""Throughput against the Celery ceiling: N actions through stage -> deliver -> confirm -> apply on one real
worker, next to N x 3 no-op Celery tasks on the same worker, broker and settings.

One worker subprocess (``celery -A deferred_confirmation.workers worker -c 2``: prefork, prefetch multiplier 1,
acks_late, task events on, as in production) consumes every queue and runs both workloads, the ceiling before and after
ours:

* **ours**: N users are created in bulk and N email changes staged with the example project's real
  ``EmailChangeForm.save()``, each in its own transaction (two threads: staging is not what is timed), while
  the worker does not consume the email queue (remote control ``cancel_consumer``); then the queue is handed
  back (``add_consumer``) and the clock starts.  The worker runs ``generate_token`` and ``send_notification``,
  which mails the link to an aiosmtpd server on loopback (a process of its own, ``--smtp``); this process reads
  each token back from the mail, confirms it with ``deferred_confirmation.pipeline.confirm(token)`` (what the confirm
  view calls; over HTTP a web server would be a third process on two cores, and the request path has its own benchmark),
  and the worker runs ``apply_action``.  The clock stops at the last ``applied_at``.
* **ceiling**: the same shape with tasks that do nothing else: N ``noop_generate`` published while the queue
  is not consumed, each publishing a ``noop_send`` from inside the worker (as generate publishes the send);
  ``noop_send`` pushes its number on a Redis list (the mail), this process pops it and publishes
  ``noop_apply`` (the confirm), which counts and stamps the time.  Same queues as ours (the channel's and the
  apply queue), so the worker's round robin between queues is the same too.

Throughput = N / (last done - queue handed back); ratio = ours / mean of the two ceiling runs.  Latencies come
from the rows' timestamps: stage -> sent (``created_at`` -> ``Delivery.sent_at``) and confirm -> applied
(``confirmed_at`` -> ``applied_at``), once in the burst (where they are mostly the backlog's wait: stage ->
sent counts from the moment the queue was handed back) and once paced well below capacity (the latency of
the pipeline itself).  CPU seconds per action (psutil: the worker and its pool, this process and the mail
server, the PostgreSQL server processes of the database) are reported too: on two shared cores they are what
bounds the ratio, and they are less noisy than wall time.

Environment: BENCH_THROUGHPUT_N (default 2000; smaller for a quick run), BENCH_THROUGHPUT_PACED (actions of the
paced run, default 60) and BENCH_THROUGHPUT_RATE (their rate per second, default 10), BENCH_PG_NAME,
BENCH_REDIS_URL; for diagnosis BENCH_KEEP_LOGS, BENCH_WORKER_LOGLEVEL and BENCH_PROFILE_DIR (below).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from bench.report import stop
from deferred_confirmation.workers import app

N = int(os.environ.get("BENCH_THROUGHPUT_N", "2000"))
PACED = int(os.environ.get("BENCH_THROUGHPUT_PACED", "60"))
PACED_RATE = float(os.environ.get("BENCH_THROUGHPUT_RATE", "10"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CELERY = str(Path(sys.executable).parent / "celery")
ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(rb"/confirm/([A-Za-z0-9_-]{43})/")
KEY = "bench:throughput:"  # every Redis key of this benchmark starts so (the broker's own keys do not)
TIMEOUT = 600.0  # seconds a phase may take before the benchmark gives up (a safety net, never reached)


# --- what the worker imports (celery ... -I bench.throughput) ----------------------------------------------
class LoopbackSMTPBackend(SMTPBackend):
    """Django's SMTP backend pointed at this benchmark's aiosmtpd server (BENCH_SMTP_PORT): the example
    settings take EMAIL_BACKEND from the environment but not the port."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", int(os.environ["BENCH_SMTP_PORT"]))
        kwargs.setdefault("timeout", 10)
        super().__init__(**kwargs)


_redis_client = None


def bench_redis() -> Any:
    """One Redis client per process, made after the prefork pool forked."""
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(REDIS_URL)
    return _redis_client


# The ceiling's tasks get the app's defaults, like ours (acks_late, reject_on_worker_lost, ignore_result).
@app.task(name="bench.throughput.noop_generate")
def noop_generate(number: int, channel_queue: str) -> None:
    noop_send.apply_async((number,), queue=channel_queue)


@app.task(name="bench.throughput.noop_send")
def noop_send(number: int) -> None:
    bench_redis().lpush(KEY + "sent", number)


@app.task(name="bench.throughput.noop_apply")
def noop_apply(number: int) -> None:
    pipe = bench_redis().pipeline()
    pipe.incr(KEY + "applied")
    pipe.set(KEY + "last", repr(time.time()))
    pipe.execute()


# BENCH_PROFILE_DIR: each pool process of the worker profiles itself (cProfile, wall time) and writes
# <dir>/worker-<pid>.prof when it exits; how the findings in bench/notes/throughput.md were made.
if os.environ.get("BENCH_PROFILE_DIR"):
    from celery import signals as _signals

    @_signals.worker_process_init.connect
    def _start_profile(**kwargs: Any) -> None:
        import atexit
        import cProfile

        profile = cProfile.Profile()

        def dump(**_kwargs: Any) -> None:
            profile.disable()
            profile.dump_stats(Path(os.environ["BENCH_PROFILE_DIR"]) / f"worker-{os.getpid()}.prof")

        _signals.worker_process_shutdown.connect(dump, weak=False)
        atexit.register(dump)
        profile.enable()


# BENCH_TASK_TIMES_DIR (set by main()): each pool process notes when each task started (wall clock) and how
# long it ran, from task_prerun to task_postrun, and writes <dir>/<pid>.json when it exits: what the tasks
# themselves took, apart from what Celery takes between them.
if os.environ.get("BENCH_TASK_TIMES_DIR"):
    import json as _json

    from celery import signals as _task_signals

    _running: dict[str, tuple[float, float]] = {}
    _ran: list[tuple[str, float, float]] = []  # (task name, started at (time.time()), seconds)

    @_task_signals.task_prerun.connect(weak=False)
    def _task_started(task_id: str | None = None, **kwargs: Any) -> None:
        _running[task_id] = (time.time(), time.perf_counter())

    @_task_signals.task_postrun.connect(weak=False)
    def _task_done(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
        started = _running.pop(task_id, None)
        if started is not None:
            _ran.append((task.name, started[0], time.perf_counter() - started[1]))

    def _write_task_times(**_kwargs: Any) -> None:
        if _ran:
            path = Path(os.environ["BENCH_TASK_TIMES_DIR"]) / f"{os.getpid()}.json"
            path.write_text(_json.dumps(_ran))

    _task_signals.worker_process_shutdown.connect(_write_task_times, weak=False)


def task_times(directory: Path, since: float, until: float, prefix: str) -> dict[str, list[float]]:
    """Seconds each task named ``prefix...`` ran, by name, of those started between ``since`` and ``until``."""
    import json

    found: dict[str, list[float]] = {}
    for path in directory.glob("*.json"):
        for name, started, seconds in json.loads(path.read_text()):
            if name.startswith(prefix) and since <= started <= until:
                found.setdefault(name, []).append(seconds)
    return found


# --- the driver --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MailServer:
    """aiosmtpd on loopback in a process of its own (its event loop must not wait for this process's GIL while
    it confirms: that would slow the worker's sends down, not ours), handing each link token it receives, with
    the time it arrived, to this process through a Redis list."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.arrived: dict[Any, datetime] = {}  # action id -> when its mail arrived (filled as it is confirmed)
        self.popen = subprocess.Popen([sys.executable, "-m", "bench.throughput", "--smtp", str(self.port)],
                                      cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SMTP server did not start")
            time.sleep(0.1)

    def next_token(self, timeout: float) -> tuple[str, datetime] | None:
        popped = bench_redis().brpop([KEY + "mail"], timeout=timeout)
        if popped is None:
            return None
        token, arrived = popped[1].decode().split(" ")
        return token, datetime.fromtimestamp(float(arrived), UTC)

    def stop(self) -> None:
        stop(self.popen, timeout=10)


class _MailHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = LINK.search(envelope.content)
        if found is None:
            return "554 no confirmation link in this message"
        bench_redis().lpush(KEY + "mail", f"{found.group(1).decode()} {time.time()!r}")
        return "250 Message accepted for delivery"


def smtp_main(port: int) -> int:
    """``python -m bench.throughput --smtp PORT``: the mail server, until SIGTERM."""
    from aiosmtpd.controller import Controller

    controller = Controller(_MailHandler(), hostname="127.0.0.1", port=port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    controller.start()
    try:
        stopped.wait()
    finally:
        controller.stop()
    return 0


class Worker:
    """``celery -A deferred_confirmation.workers worker -c 2`` in its own process group, output to a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.hostname = f"bench-throughput-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.log = log
        self._log_file = log.open("wb")
        level = os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")
        args = [CELERY, "-A", "deferred_confirmation.workers", "worker", "-P", "prefork", "-c", "2", "-l", level, "-n",
                self.hostname,
                "--without-mingle", "--without-gossip", "-I", "bench.throughput"]
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.output()}")
            if (app.control.inspect(destination=[self.hostname], timeout=1.0).ping() or {}).get(self.hostname):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not answer a ping:\n{self.output()}")

    def consume(self, queue_name: str, on: bool) -> None:
        """Start or stop consuming ``queue_name``; waits for the worker's reply."""
        call = app.control.add_consumer if on else app.control.cancel_consumer
        replies = call(queue_name, destination=[self.hostname], reply=True, timeout=5.0)
        if not replies:
            raise RuntimeError(f"the worker did not answer {'add' if on else 'cancel'}_consumer:\n{self.output()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker and its pool so far."""
        import psutil

        try:
            main = psutil.Process(self.popen.pid)
            total = 0.0
            for proc in [main, *main.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return float("nan")

    def stop(self) -> None:
        try:
            if self.popen.poll() is None:
                self.popen.terminate()  # warm shutdown: running tasks finish, messages are acknowledged
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the pool, anything left behind
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        finally:
            self._log_file.close()


def process_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (the ones gone count 0)."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


class PostgresCPU:
    """CPU of the PostgreSQL server processes serving this benchmark's database, sampled twice a second from
    their process titles ("postgres: ... <user> <database> ..."): the worker's connections are replaced every
    CONN_MAX_AGE, so a list taken once would lose them.  Processes already there at start count from then."""

    def __init__(self, database: str) -> None:
        self.marker = f" {database} "
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (CPU when first seen, CPU when last seen)
        self._stop = threading.Event()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, first: bool = False) -> None:
        import psutil

        for proc in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.info["name"] != "postgres" or self.marker not in " ".join(proc.info["cmdline"] or ()) + " ":
                    continue
                times = proc.cpu_times()
                used = times.user + times.system
                start = self.seen[proc.pid][0] if proc.pid in self.seen else (used if first else 0.0)
                self.seen[proc.pid] = (start, used)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> float:
        """Seconds of CPU used since start."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(last - first for first, last in self.seen.values())


def _drop_keys() -> None:
    client = bench_redis()
    keys = list(client.scan_iter(KEY + "*"))
    if keys:
        client.delete(*keys)


def run_ceiling(worker: Worker, n: int, channel_queue: str, apply_queue: str) -> dict[str, float]:
    """N x (noop_generate -> noop_send -> [this process] -> noop_apply); actions per second."""
    client = bench_redis()
    _drop_keys()
    worker.consume(channel_queue, False)
    for number in range(n):
        noop_generate.apply_async((number, channel_queue), queue=channel_queue)
    cpu, own = worker.cpu_seconds(), process_cpu([os.getpid()])
    started = time.time()
    worker.consume(channel_queue, True)
    deadline = time.monotonic() + TIMEOUT
    while int(client.get(KEY + "applied") or 0) < n:
        popped = client.brpop([KEY + "sent"], timeout=0.05)
        if popped is not None:
            noop_apply.apply_async((int(popped[1]),), queue=apply_queue)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ceiling run did not finish in {TIMEOUT:.0f} s:\n{worker.output()}")
    seconds = float(client.get(KEY + "last")) - started
    cpu, own = worker.cpu_seconds() - cpu, process_cpu([os.getpid()]) - own
    _drop_keys()
    return {"seconds": seconds, "per_second": n / seconds, "cpu_ms_per_action": cpu / n * 1000,
            "driver_cpu_ms_per_action": own / n * 1000, "window": (started, started + seconds)}


def pool_split(run: dict[str, Any], times: dict[str, list[float]], n: int) -> tuple[float, float]:
    """ms per action of the pool's time (two processes for the run's length): (the tasks' own run time, the
    rest: Celery receiving, handing over and acknowledging between tasks, and any idle wait)."""
    body = sum(sum(seconds) for seconds in times.values()) / n * 1000
    return body, 2 * run["seconds"] / n * 1000 - body


def make_users(count: int, tag: str) -> list[Any]:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    users = [user_model(username=f"tp-{tag}-{i}", email=f"tp-{tag}-{i}@old.example.com", password="!")  # noqa: S106 (unusable)
             for i in range(count)]
    return user_model.objects.bulk_create(users, batch_size=1000)


def stage_one(user: Any, tag: str) -> Any:
    """One email change, as a view would stage it: validated, then DeferredForm.save() in its own transaction."""
    from django.db import transaction

    from example.accounts.forms import EmailChangeForm

    form = EmailChangeForm({"email": f"{user.username}@new.example.com"}, instance=user)
    if not form.is_valid():
        raise RuntimeError(f"the email change of {user.username} does not validate: {form.errors.as_text()}")
    with transaction.atomic():  # ATOMIC_REQUESTS-like: the generate task is published when this commits
        return form.save(user=user)


def stage_all(users: list[Any], tag: str) -> list[Any]:
    """Every user's change staged, by two threads (two "web processes": staging is not what is timed, and the
    idle worker leaves both cores to it); the actions' ids."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def stage_share(share: list[Any]) -> list[Any]:
        try:
            return [stage_one(user, tag).pk for user in share]
        finally:
            connection.close()  # this thread's own

    with ThreadPoolExecutor(2) as pool:
        return [pk for staged in pool.map(stage_share, [users[0::2], users[1::2]]) for pk in staged]


def confirm_until_applied(mail: MailServer, action_ids: list[Any], since: datetime, worker: Worker,
                          stage: Any = None) -> None:
    """Confirm every token mailed until all ``action_ids`` (the actions staged since ``since``) are applied;
    ``stage()`` (if given) is called between tokens, returning False once it has staged everything (the paced
    run stages, appending to ``action_ids``, while it confirms)."""
    from django.db.models import Count

    from deferred_confirmation.django_integration.models import DeferredAction
    from deferred_confirmation.pipeline import confirm
    from deferred_confirmation.pipeline.states import State

    deadline = time.monotonic() + TIMEOUT
    next_poll = 0.0
    staging = stage is not None
    while True:
        if staging:
            staging = stage()
        mailed = mail.next_token(timeout=0.01 if staging else 0.05)
        if mailed is not None:
            result = confirm(mailed[0])
            if not result.ok:
                raise RuntimeError(f"a mailed token was refused: {result.status}")
            mail.arrived[result.action.pk] = mailed[1]
            continue
        if staging or time.monotonic() < next_poll:
            continue
        # A small aggregate, twice a second: the poll must not take the CPU the worker is being measured on.
        next_poll = time.monotonic() + 0.5
        states = dict(DeferredAction.objects.filter(created_at__gte=since).order_by().values_list("state")
                      .annotate(n=Count("pk")))
        failed = sum(n for state, n in states.items() if state not in (
            State.PENDING, State.NOTIFIED, State.CONFIRMED, State.APPLIED))
        if failed:
            reasons = DeferredAction.objects.filter(created_at__gte=since).exclude(state__in=[
                State.PENDING, State.NOTIFIED, State.CONFIRMED, State.APPLIED]).values_list(
                "state", "failure_reason")[:3]
            raise RuntimeError(f"{failed} actions did not apply: {list(reasons)}")
        if states.get(State.APPLIED, 0) == len(action_ids):  # complete: staging is over
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {states.get(State.APPLIED, 0)} of {len(action_ids)} applied after "
                               f"{TIMEOUT:.0f} s:\n{worker.output()}")


def timestamps(action_ids: list[Any], mail: MailServer) -> list[dict[str, Any]]:
    """Each action's timestamps.  ``sent_at`` is missing where the confirmation overtook the send's own
    bookkeeping (the mail arrives before the worker records it sent); the mail's arrival stands in for it."""
    from deferred_confirmation.django_integration.models import Delivery

    rows = list(Delivery.objects.filter(action_id__in=action_ids).values(
        "action_id", "sent_at", staged_at=_f("action__created_at"), confirmed=_f("action__confirmed_at"),
        applied=_f("action__applied_at")))
    for row in rows:
        row["sent"] = row["sent_at"] or mail.arrived[row["action_id"]]
    return rows


def _f(name: str) -> Any:
    from django.db.models import F

    return F(name)


def run_ours(worker: Worker, mail: MailServer, n: int, channel_queue: str) -> dict[str, Any]:
    from django.conf import settings
    from django.utils import timezone

    users = make_users(n, "burst")
    since = timezone.now()
    worker.consume(channel_queue, False)
    staged_at = time.monotonic()
    actions = stage_all(users, "burst")
    stage_seconds = time.monotonic() - staged_at
    # The worker's database connections open with its first tasks (and are kept: CONN_MAX_AGE): their server
    # processes are counted from a moment later, and whatever they did before that is left out.
    others = [os.getpid(), mail.popen.pid]
    cpu, others_cpu = worker.cpu_seconds(), process_cpu(others)
    postgres = PostgresCPU(settings.DATABASES["default"]["NAME"])
    started = timezone.now()
    worker.consume(channel_queue, True)
    confirm_until_applied(mail, actions, since, worker)
    cpu, others_cpu = worker.cpu_seconds() - cpu, process_cpu(others) - others_cpu
    backends_cpu = postgres.stop()
    rows = timestamps(actions, mail)
    seconds = (max(row["applied"] for row in rows) - started).total_seconds()
    return {
        "without_sent_at": sum(row["sent_at"] is None for row in rows),
        "seconds": seconds, "per_second": n / seconds, "cpu_ms_per_action": cpu / n * 1000,
        "stage_ms_per_save": stage_seconds / n * 1000,
        "window": (started.timestamp(), started.timestamp() + seconds),
        "driver_cpu_ms_per_action": others_cpu / n * 1000,  # confirming, and the mail server
        "postgres_cpu_ms_per_action": backends_cpu / n * 1000, "postgres_backends": len(postgres.seen),
        # In the burst every action waits from the moment the queue is handed back, not from its own save.
        "sent": [(row["sent"] - started).total_seconds() for row in rows],
        "applied": [(row["applied"] - row["confirmed"]).total_seconds() for row in rows],
    }


def run_paced(worker: Worker, mail: MailServer, count: int, rate: float) -> dict[str, Any]:
    """``count`` actions staged ``rate`` a second (each in its own transaction), confirmed as their mail
    arrives: the pipeline's latency when nothing queues up."""
    from django.utils import timezone

    users = make_users(count, "paced")
    since = timezone.now()
    actions: list[Any] = []
    started = time.monotonic()

    def stage() -> bool:
        due = started + len(actions) / rate
        if len(actions) < count and time.monotonic() >= due:
            actions.append(stage_one(users[len(actions)], "paced").pk)
        return len(actions) < count

    confirm_until_applied(mail, actions, since, worker, stage)
    rows = timestamps(actions, mail)
    return {"without_sent_at": sum(row["sent_at"] is None for row in rows),
            "sent": [(row["sent"] - row["staged_at"]).total_seconds() for row in rows],
            "applied": [(row["applied"] - row["confirmed"]).total_seconds() for row in rows]}


def main() -> int:
    import django
    from django.conf import settings
    from django.core.management import call_command

    from bench.report import Result, Row, fresh_database, summary_ms

    # Stopped (the runner, a timeout): unwind, so the worker and the mail server are stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fresh_database(settings.DATABASES["default"]["NAME"])
    django.setup()
    call_command("migrate", verbosity=0)

    from deferred_confirmation.pipeline.conf import app_settings

    channel_queue = app_settings.channel("email")["QUEUE"]
    apply_queue = app_settings.APPLY_QUEUE
    app.control.purge()
    _drop_keys()

    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONUNBUFFERED": "1",
           "BENCH_REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "EXAMPLE_VAR_DIR": str(tmp / "var"), "PYTHONPATH": str(ROOT),
           "BENCH_TASK_TIMES_DIR": str(tmp / "task-times")}
    (tmp / "task-times").mkdir()
    mail = MailServer(env)
    env.update({"EMAIL_BACKEND": "bench.throughput.LoopbackSMTPBackend", "BENCH_SMTP_PORT": str(mail.port)})
    worker = None
    try:
        worker = Worker(env, tmp / "worker.log")
        worker.wait_ready()
        print(f"throughput: N={N}, one worker (-c 2, prefetch 1, acks_late), broker {settings.CELERY_BROKER_URL}",
              flush=True)
        before = run_ceiling(worker, N, channel_queue, apply_queue)
        print(f"  ceiling (before): {before['per_second']:.0f} actions/s, {before['seconds']:.1f} s", flush=True)
        ours = run_ours(worker, mail, N, channel_queue)
        print(f"  ours:             {ours['per_second']:.1f} actions/s, {ours['seconds']:.1f} s (staging, not timed: "
              f"{ours['stage_ms_per_save']:.1f} ms per save() in each of 2 threads)", flush=True)
        after = run_ceiling(worker, N, channel_queue, apply_queue)
        print(f"  ceiling (after):  {after['per_second']:.0f} actions/s, {after['seconds']:.1f} s", flush=True)
        paced = run_paced(worker, mail, PACED, PACED_RATE)
        worker.stop()  # its pool processes write their task times as they exit
        bodies = {name: task_times(tmp / "task-times", *run["window"], prefix)
                  for name, run, prefix in (("before", before, "bench."), ("ours", ours, "confirmation."),
                                            ("after", after, "bench."))}
    finally:
        if worker is not None:
            worker.stop()
        mail.stop()
        app.control.purge()
        _drop_keys()
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"  worker log: {tmp / 'worker.log'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ceiling = statistics.fmean([before["per_second"], after["per_second"]])
    ratio = ours["per_second"] / ceiling
    cpu = {  # ms per action: the worker; and everything that is ours (the ceiling has no PostgreSQL)
        "worker": (ours["cpu_ms_per_action"], statistics.fmean(r["cpu_ms_per_action"] for r in (before, after))),
        "driver": (ours["driver_cpu_ms_per_action"],
                   statistics.fmean(r["driver_cpu_ms_per_action"] for r in (before, after))),
        "postgres": (ours["postgres_cpu_ms_per_action"], 0.0),
    }
    total = tuple(sum(values[i] for values in cpu.values()) for i in (0, 1))
    # Pool time per action (two pool processes for the run's length) = the tasks' own run time + what Celery
    # takes between them (receiving, handing over, acknowledging, events), as the pool processes saw it.
    split = {name: pool_split(run, bodies[name], N) for name, run in (("before", before), ("ours", ours),
                                                                     ("after", after))}
    body_c = statistics.fmean([split["before"][0], split["after"][0]])
    gap_c = statistics.fmean([split["before"][1], split["after"][1]])
    body_o, gap_o = split["ours"]
    task_p50 = {name.removeprefix("confirmation."): statistics.median(seconds) * 1000
                for name, seconds in sorted(bodies["ours"].items())}
    needed = 2 * (gap_c + body_c) - gap_o  # our bodies per action at which the ratio would be 0.5
    lat = {(kind, stage): summary_ms(run[stage]) for kind, run in (("burst", ours), ("paced", paced))
           for stage in ("sent", "applied")}
    print(f"  ratio ours/ceiling: {ratio:.3f} (target >= 0.5); vs the run before "
          f"{ours['per_second'] / before['per_second']:.3f}, vs the one after "
          f"{ours['per_second'] / after['per_second']:.3f}")
    print("  CPU ms per action, ours / ceiling: " + ", ".join(
        f"{name} {o:.1f} / {c:.1f}" for name, (o, c) in cpu.items())
        + f"; all {total[0]:.1f} / {total[1]:.1f} ({ours['postgres_backends']} PostgreSQL server processes)")
    for (kind, stage), summary in lat.items():
        name = "stage -> sent" if stage == "sent" else "confirm -> applied"
        print(f"  {kind:5} {name:18} p50 {summary['p50']:8.1f} ms  p99 {summary['p99']:8.1f} ms")
    print(f"  pool time per action, ours / ceiling: task bodies {body_o:.1f} / {body_c:.1f} ms, Celery between "
          f"tasks {gap_o:.1f} / {gap_c:.1f} ms; task p50: " + ", ".join(f"{k} {v:.1f}" for k, v in task_p50.items())
          + f" ms; 0.5 would need our bodies at {needed:.1f} ms per action")
    missing = ours["without_sent_at"] + paced["without_sent_at"]
    if missing:
        print(f"  {missing} deliveries confirmed without a sent_at (the mail's arrival stood in)")

    rows = [
        Row(f"actions/s, N={N}, one worker -c 2", round(ours["per_second"], 2), round(ceiling, 2),
            "3 chained no-op Celery tasks per action (mean of a run before and one after)", "actions/s", ">= 0.5"),
        Row("worker CPU per action", round(cpu["worker"][0], 2), round(cpu["worker"][1], 2),
            "3 chained no-op tasks", "ms"),
        Row("CPU per action: worker + PostgreSQL + driver", round(total[0], 2), round(total[1], 2),
            "3 chained no-op tasks (no PostgreSQL)", "ms"),
        Row("pool time per action: the tasks' own run time", round(body_o, 2), round(body_c, 2),
            "3 chained no-op tasks", "ms"),
        Row("pool time per action: Celery between tasks", round(gap_o, 2), round(gap_c, 2),
            "3 chained no-op tasks", "ms"),
    ]
    for name, p50 in task_p50.items():
        rows.append(Row(f"{name} run time p50 (in the pool)", round(p50, 2), unit="ms"))
    for (kind, stage), summary in lat.items():
        name = "stage -> sent" if stage == "sent" else "confirm -> applied"
        where = f"paced, {PACED_RATE:g}/s" if kind == "paced" else f"burst of {N}"
        for p in ("p50", "p99"):
            rows.append(Row(f"{name} {p} ({where})", round(summary[p], 1), unit="ms"))
    notes = f"""\
N = {N} email changes of the example project, each staged with the real `EmailChangeForm.save()` in its own
transaction, go through generate -> send (SMTP to aiosmtpd on loopback, in a process of its own) -> confirm
(`deferred_confirmation.pipeline.confirm(token)` with the token read back from the mail, by the driver: what the
confirm view calls, without a web server as a third process on two cores) -> apply, on ONE worker subprocess
(`celery -A deferred_confirmation.workers worker -P prefork -c 2`, all queues; prefetch multiplier 1, acks_late, task
events on: the production settings).  The staged messages wait while the worker does not consume the email queue
(remote control `cancel_consumer`); the clock starts when it is handed back and stops at the last `applied_at`.

The ceiling: per action three no-op Celery tasks on the same worker, broker, queues and settings, chained the
same way as ours: `noop_generate` publishes `noop_send` from the worker, `noop_send` pushes its number on a
Redis list (the mail), the driver pops it and publishes `noop_apply` (the confirm).  Chained, not 3N
independent tasks, because ours cannot send before its generate or apply before its confirm: the same
dependencies, the same messages published by the same processes, with the work taken out.  Run before and
after ours ({before['per_second']:.0f} and {after['per_second']:.0f} actions/s); the baseline is their mean.

CPU per action (psutil, user + system, during the timed window): the worker and its pool
{cpu['worker'][0]:.1f} ms (ceiling {cpu['worker'][1]:.1f}), the PostgreSQL server processes of the benchmark's
database {cpu['postgres'][0]:.1f} ms, the driver and the mail server {cpu['driver'][0]:.1f} ms (ceiling
{cpu['driver'][1]:.1f}).  On two shared cores these all compete for the same CPU, so the ratio is bounded by
the CPU budget ratio ({total[1]:.1f} / {total[0]:.1f} = {total[1] / total[0]:.2f}) more than by any wait.

Latency, from the rows' timestamps: stage -> sent is `created_at` -> `Delivery.sent_at` (in the burst, from the
moment the queue was handed back: there it is the backlog draining, not the pipeline's latency); confirm ->
applied is `confirmed_at` -> `applied_at`.  The paced run stages {PACED} actions at {PACED_RATE:g}/s and confirms
each as its mail arrives: the latency with nothing queued.
"""
    result = Result(
        name="throughput", title="Throughput against the Celery ceiling", order=2, rows=rows, notes=notes,
        plot={"kind": "bar", "title": f"Actions per second, N={N}, one worker (-c 2)", "xlabel": "",
              "ylabel": "actions/s", "log": False, "categories": ["actions/s"],
              "series": {"ceiling (before)": [round(before["per_second"], 1)],
                         "ours": [round(ours["per_second"], 1)],
                         "ceiling (after)": [round(after["per_second"], 1)]}},
    )
    print(f"wrote {result.write().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(smtp_main(int(sys.argv[2])) if sys.argv[1:2] == ["--smtp"] else main())
