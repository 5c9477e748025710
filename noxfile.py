"""The supported Django x Python matrix (`make test` is the default: Django 5.2 on Python 3.11).

    nox -l                                # the sessions
    nox -s "tests(dj61-py313)"            # one combination, the fast subset, on SQLite
    nox -s "tests(dj61-py313)" -- full    # the whole suite but the browser tests, on PostgreSQL
    nox -s "tests(dj61-py313)" -- pg-areas   # forms, web, admin, channels and workers whole, on PostgreSQL (CI)
    nox -s "tests(dj61-py313)" -- pg tests/channels   # PostgreSQL, with pytest's own arguments

Each combination has its own Redis database and PostgreSQL test database, so sessions never share a broker or
a test database with each other or with `make test` (Redis db 15, test_deferred_confirmation).  The venvs live
in .nox/; `nox -r` reuses them.  Python 3.12 and 3.13 are looked up in pyenv's versions when they are not on
PATH under their own name.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

# uv makes a venv with the dev extra in seconds (pip: about two minutes each); plain venv + pip without it.
nox.options.default_venv_backend = "uv|venv"
# uv uses the interpreters that are installed here; it never downloads one.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
os.environ.setdefault("UV_PYTHON_PREFERENCE", "only-system")

# The combinations: Django 6 needs Python 3.12 or newer.  (django, python, Redis db, PostgreSQL test database)
MATRIX = [
    ("5.2", "3.11", 1, "test_dc_nox_52_311"),
    ("5.2", "3.12", 2, "test_dc_nox_52_312"),
    ("5.2", "3.13", 3, "test_dc_nox_52_313"),
    ("6.0", "3.12", 4, "test_dc_nox_60_312"),
    ("6.0", "3.13", 12, "test_dc_nox_60_313"),
    ("6.1", "3.12", 13, "test_dc_nox_61_312"),
    ("6.1", "3.13", 14, "test_dc_nox_61_313"),
]

# The fast subset (about a minute): from each area that Django's or Python's version reaches, the modules that
# cover most of it quickly: models, forms and the system check; the views and their templates; the admin; each
# channel's send and confirm; mail through real SMTP and Django 6.1's MAILERS; a real worker process and beat.
FAST = [
    "tests/forms/test_save.py",
    "tests/forms/test_apply.py",
    "tests/forms/test_checks.py",
    "tests/forms/test_legacy_paths.py",
    "tests/forms/test_sensitive.py",
    "tests/web/test_link_view.py",
    "tests/web/test_code_view.py",
    "tests/web/test_status_view.py",
    "tests/web/test_confirm_api.py",
    "tests/admin",
    "tests/channels/test_contract.py",
    "tests/channels/test_exceptions.py",
    "tests/channels/sms/test_flow.py",
    "tests/channels/sms/test_channel.py",
    "tests/channels/letter/test_code_page.py",
    "tests/channels/microdeposit/test_channel_and_ledger.py",
    "tests/channels/microdeposit/test_malformed_input.py",
    "tests/workers/test_mailers.py",
    "tests/workers/test_smtp_keepalive.py",
    "tests/workers/test_smtp_delivery.py",
    "tests/workers/test_subprocess_worker.py::test_a_change_is_mailed_confirmed_over_http_and_applied_by_the_worker_process",
    "tests/workers/test_subprocess_worker.py::test_beat_from_the_database_schedule_drives_expire_in_the_worker",
]
# The PostgreSQL pass on the newest Django (`-- pg-areas`): every test of the areas above, whole (forms, web,
# admin, channels, workers; about four minutes), without the fault-injection, load, packaging and ops suites,
# which exercise Celery, Redis and the OS more than Django and run in `make test`.
AREAS = ["tests/forms", "tests/web", "tests/admin", "tests/channels", "tests/workers"]

# Django versions that a dependency's metadata refuses although it works with them: the newest Django that
# every declared bound allows (django-celery-beat 2.9: Django<6.1).
PAST_DECLARED_BOUNDS = {"6.1": "Django>=6.0,<6.1"}


def _pyenv_pythons() -> None:
    """Put pyenv's installed versions on PATH, so that `python3.12` finds 3.12 without `pyenv global`."""
    pyenv = shutil.which("pyenv")
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip() or root  # noqa: S603
    found = []
    for python in sorted({python for _django, python, _db, _name in MATRIX}):
        on_path = shutil.which(f"python{python}")
        if on_path and subprocess.run([on_path, "--version"], capture_output=True, check=False).returncode == 0:  # noqa: S603
            continue  # a real interpreter, not a pyenv shim that refuses to run it
        installed = glob.glob(os.path.join(root, "versions", f"{python}.*", "bin"))
        found += sorted(installed, key=_version_of)[-1:]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


def _version_of(bin_dir: str) -> list[int]:
    return [int(n) for n in os.path.basename(os.path.dirname(bin_dir)).split(".") if n.isdigit()]


_pyenv_pythons()


@nox.session
@nox.parametrize(
    ("python", "django", "redis_db", "pg_name"),
    [nox.param(p, d, db, name, id=f"dj{d.replace('.', '')}-py{p.replace('.', '')}") for d, p, db, name in MATRIX],
)
def tests(session: nox.Session, django: str, redis_db: int, pg_name: str) -> None:
    """One combination: the fast subset on SQLite by default; `-- full` (the whole suite but the browser tests) or
    `-- pg-areas` (forms, web, admin, channels, workers) on PostgreSQL; `-- pg ARGS` / `-- sqlite ARGS` for
    pytest arguments of one's own."""
    wanted = f"Django>={django},<{_next(django)}"
    if django in PAST_DECLARED_BOUNDS and session.venv_backend == "uv":
        # django-celery-beat 2.9 declares Django<6.1 although it runs on 6.1 (its tests here pass): uv's
        # override replaces that bound with ours.  Drop this once django-celery-beat allows 6.1.
        overrides = os.path.join(session.create_tmp(), "overrides.txt")
        with open(overrides, "w") as file:
            file.write(wanted + "\n")
        session.install("-e", ".[dev]", "pip", "--override", overrides)  # pip: the packaging tests build with it
    elif django in PAST_DECLARED_BOUNDS:
        # The same with pip, which has no override: install with the newest Django every declared bound
        # allows, then put ours in its place without the resolver.
        session.install("-e", ".[dev]", PAST_DECLARED_BOUNDS[django])
        session.install("--no-deps", wanted)
    else:
        session.install("-e", ".[dev]", "pip", wanted)
    session.run("python", "-c", "import django; print('Django', django.get_version())", silent=False)

    args = list(session.posargs)
    database = "sqlite"
    if args[:1] == ["full"]:
        database, args = "postgres", ["--ignore=tests/browser", *args[1:]]
    elif args[:1] == ["pg-areas"]:
        database, args = "postgres", [*AREAS, *args[1:]]
    elif args[:1] in (["pg"], ["sqlite"]):
        database = "postgres" if args[0] == "pg" else "sqlite"
        args = args[1:] or FAST
    else:
        args = [*FAST, *args]
    tmp = session.create_tmp()
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", *args,
        env={
            "TEST_DATABASE": database,
            "TEST_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "TEST_PG_NAME": pg_name,
            "TEST_SQLITE_NAME": os.path.join(tmp, "test.sqlite3"),
            "TMPDIR": tmp,
        },
    )


def _next(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) + 1}"
