"""The README's quickstart, followed word for word, works: the built wheel installed (not editable) into a fresh
virtualenv, a project made by ``django-admin startproject``, each of the README's code blocks written into the file
its first line names, the worker started with the README's command, and one email change driven over HTTP (the
Django test client against the project's own URLs) from the form to ``applied``.

A wrong README (a missing import, a wrong setting, a URL that is not there) fails this test.  Only what this
machine needs differently is added after the README's settings: the test run's Redis database as the broker, and
mail written to files the test can read instead of the console."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from tests.ops.conftest import ROOT
from tests.workers.test_subprocess_worker import Process

pytestmark = [
    pytest.mark.subprocess, pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("TEST_DATABASE") == "postgres",
                       reason="the quickstart project has its own SQLite database: it runs in the SQLite pass"),
]

README = ROOT / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
#: The first line of a file block: "# mysite/settings.py (add at the end)", "<!-- accounts/templates/... -->".
TARGET = re.compile(r"^(?:#|<!--)\s*(?P<path>[\w./-]+)(?P<append> \(add at the end\))?\s*(?:-->)?$")

DRIVER = """
import email, email.policy, pathlib, re, time
from django.test.utils import setup_test_environment
setup_test_environment()  # lets the test client in (ALLOWED_HOSTS); the worker still sends the mail
from django.contrib.auth import get_user_model
from django.test import Client
from deferred_confirmation.django_integration.models import DeferredAction

user = get_user_model().objects.create_user("ada", "old@example.com", "a-password-0f-hers")
client = Client()
client.force_login(user)
assert client.get("/account/email/").status_code == 200
response = client.post("/account/email/", {"email": "new@example.com"})
assert response.status_code == 302, (response.status_code, response.content[:500])
assert get_user_model().objects.get(pk=user.pk).email == "old@example.com"

def wait(what, check, timeout=90):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.3)
    return found

[mail_file] = wait("the mail", lambda: list(pathlib.Path(MAIL_DIR).iterdir()))
message = email.message_from_string(wait("the whole mail", mail_file.read_text), policy=email.policy.default)
assert message["To"] == "new@example.com", message["To"]
token = re.search(r"/confirm/([A-Za-z0-9_-]{43})/", message.get_body(("plain",)).get_content()).group(1)
assert client.post(f"/confirm/{token}/").status_code == 302
wait("the apply", lambda: DeferredAction.objects.get().state == "applied")
assert get_user_model().objects.get(pk=user.pk).email == "new@example.com"
print("APPLIED")
"""


def readme_blocks() -> list[tuple[str, str]]:
    section = README.read_text().split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    return BLOCK.findall(section)


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_readme_quickstart_in_a_new_project_applies_an_email_change(wheel, tmp_path):
    blocks = readme_blocks()
    [install] = [text for lang, text in blocks if lang == "bash" and "pip install" in text]
    [commands] = [text for lang, text in blocks if lang == "bash" and "celery" in text]
    files = [(TARGET.match(text.splitlines()[0]), text) for lang, text in blocks if lang != "bash"]
    assert files and all(target for target, _text in files), "each code block names its file in its first line"

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    for key in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DC_TEST_SHARED_DB_NAME", "DC_TEST_EMAIL_FILE_PATH"):
        env.pop(key, None)
    # `pip install "deferred-confirmation[extras]"`, with the wheel standing in for the published package
    package = re.search(r'pip install "deferred-confirmation(\[[\w,]*\])?"', install)
    assert package, install
    run(["pip", "install", "-q", f"{wheel}{package.group(1) or ''}"], tmp_path, env, timeout=600)

    site = tmp_path / "site"
    site.mkdir()
    run(["django-admin", "startproject", "mysite", str(site)], tmp_path, env)
    run(["python", "manage.py", "startapp", "accounts"], site, env)
    for target, text in files:
        path = site / target["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if target["append"] else "w") as out:
            out.write(("\n" if target["append"] else "") + text)

    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    with (site / "mysite" / "settings.py").open("a") as out:
        out.write(textwrap.dedent(f"""
            # This machine: the test run's own Redis database, and mail as files the test reads.
            CELERY_BROKER_URL = {settings.CELERY_BROKER_URL!r}
            EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
            EMAIL_FILE_PATH = {str(mail_dir)!r}
        """))
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    run(["python", "manage.py", "check"], site, env)

    lines = [line.split("#", 1)[0].strip() for line in commands.splitlines()]
    assert "python manage.py migrate" in lines
    run(["python", "manage.py", "migrate", "-v", "0"], site, env)
    [worker_line] = [line for line in lines if " worker" in line]
    assignments, _, command = worker_line.partition(" celery ")
    assert assignments == "DJANGO_SETTINGS_MODULE=mysite.settings", worker_line
    worker = Process(["celery", *command.split(), "-c", "1"], env, tmp_path / "worker.log", cwd=site)
    try:
        out = run(["python", "manage.py", "shell", "-c", f"MAIL_DIR = {str(mail_dir)!r}\n{DRIVER}"], site, env,
                  timeout=300)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker ---\n{worker.output()[-4000:]}") from None
    finally:
        worker.stop()
    assert "APPLIED" in out
