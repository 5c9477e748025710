"""The package as users install it: one import name, nothing a neighbour or a project can shadow.

A wheel is built from the repository and checked file by file: everything lives under ``deferred_confirmation/``
(no top-level ``pipeline``, ``workers`` or ``django_integration``), every module of the three folders and every
template is in it.  Then the wheel and django-pipeline (an asset library whose top-level package is called
``pipeline``) are installed into one directory, side by side, as pip would put them into one site-packages, and
a project runs from there, once with django-pipeline in its INSTALLED_APPS and once with its own
``pipeline.py`` and ``workers.py`` at its root: the system check, the migrations, and a change saved by the web
side, mailed by a real ``celery -A deferred_confirmation.workers`` worker, confirmed and applied, with
django-pipeline and the project's modules still importable as theirs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import tomllib
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("pipeline", "workers", "django_integration")


def test_pyproject_lists_every_package_of_the_three_folders():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"deferred_confirmation." + ".".join(init.parent.relative_to(ROOT).parts)
             for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")}
    assert set(config["packages"]) == found
    assert config["package-dir"] == {f"deferred_confirmation.{folder}": folder for folder in FOLDERS}


def test_the_wheel_installs_one_top_level_name_and_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"deferred_confirmation"}
    expected = {f"deferred_confirmation/{path.relative_to(ROOT)}" for folder in FOLDERS
                for path in (ROOT / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts
                and (path.suffix == ".py" or "templates" in path.parts or "locale" in path.parts)}
    assert expected <= set(names), sorted(expected - set(names))[:10]
    assert "deferred_confirmation/django_integration/templates/confirmation/link.html" in names
    assert "deferred_confirmation/django_integration/locale/fr/LC_MESSAGES/django.mo" in names


PROJECT_SETTINGS = """
from pathlib import Path
BASE = Path(__file__).resolve().parent
SECRET_KEY = "packaging-test-0123456789abcdefghijklmnopqrstuvwxyz-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                  "django.contrib.staticfiles", *{apps!r}, "django_celery_beat",
                  "deferred_confirmation.django_integration"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE / "db.sqlite3",
                          "OPTIONS": {{"transaction_mode": "IMMEDIATE", "timeout": 20}}}}}}
STATIC_URL = "static/"
PIPELINE = {{"PIPELINE_ENABLED": False}}  # django-pipeline's own settings
USE_TZ = True
ROOT_URLCONF = "urls"
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}}]
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = BASE / "mail"
DEFAULT_FROM_EMAIL = "site@example.com"
CELERY_BROKER_URL = {broker!r}
CELERY_TASK_DEFAULT_QUEUE = {queue!r}
DEFERRED_CONFIRMATION = {{"SITE_URL": "https://project.example", "CHANNELS": {{"email": {{"QUEUE": {queue!r}}}}},
                         "APPLY_QUEUE": {queue!r}, "MAINTENANCE_QUEUE": {queue!r}}}
"""

PROJECT_FORMS = """
from django.contrib.auth.models import User
from deferred_confirmation.django_integration.forms import DeferredForm

class EmailChangeForm(DeferredForm):
    recipient_field = "email"
    class Meta:
        model = User
        fields = ["email"]
"""

PROJECT_URLS = """
from django.urls import include, path
urlpatterns = [path("confirm/", include("deferred_confirmation.django_integration.urls"))]
"""

# Scenario -> (INSTALLED_APPS of its own, modules at the project's root).  The second: the project's own modules
# with the names the library used to install at the top level.
SCENARIOS = {
    "django-pipeline": (["pipeline"], {}),
    "project modules": ([], {"pipeline.py": "OWNER = 'project'\n", "workers.py": "OWNER = 'project'\n"}),
}

SAVE = """
from django.contrib.auth.models import User
from forms import EmailChangeForm
user = User.objects.create_user("ada", "old@example.com", "pw")
form = EmailChangeForm({"email": "new@example.com"}, instance=user)
assert form.is_valid(), form.errors
action = form.save()
print("ACTION", action.pk)
"""

CONFIRM = """
import re, sys
from pathlib import Path
from django.contrib.auth.models import User
from deferred_confirmation.pipeline import confirm
mail = "".join(p.read_text() for p in Path("mail").glob("*"))
token = re.search(r"/confirm/([A-Za-z0-9_-]{43})/", mail).group(1)
print("CONFIRM", confirm(token).status)
"""

CHECK_APPLIED = """
from django.contrib.auth.models import User
from deferred_confirmation.django_integration.models import DeferredAction
import deferred_confirmation.pipeline as ours, pipeline
try:
    import workers
except ImportError:
    workers = None
print("APPLIED", DeferredAction.objects.get().state, User.objects.get().email)
print("OWNERS", pipeline.__file__, getattr(workers, "__file__", "none"), ours.__file__)
"""


@pytest.fixture(params=list(SCENARIOS))
def project(request, wheel, tmp_path):
    """A project directory (one of SCENARIOS), with the wheel and django-pipeline installed side by side into
    one directory (site/)."""
    apps, shadows = SCENARIOS[request.param]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel),
                    "django-pipeline"], check=True, capture_output=True, timeout=240)
    assert (site / "pipeline" / "__init__.py").exists() and (site / "deferred_confirmation").is_dir()
    broker = urlsplit(settings.CELERY_BROKER_URL)
    queue = f"dc-packaging-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "project"
    root.mkdir()
    (root / "settings.py").write_text(PROJECT_SETTINGS.format(apps=apps, broker=broker.geturl(), queue=queue))
    (root / "forms.py").write_text(textwrap.dedent(PROJECT_FORMS))
    (root / "urls.py").write_text(textwrap.dedent(PROJECT_URLS))
    for name, text in shadows.items():
        (root / name).write_text(text)
    (root / "mail").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "TEST_", "DC_TEST"))}
    # The project's root first (as `manage.py` and `celery` put it), then the installed packages; the
    # virtualenv's site-packages still provide Django and Celery.
    env.update(DJANGO_SETTINGS_MODULE="settings", PYTHONPATH=os.pathsep.join([str(root), str(site)]))
    yield root, env, queue, bool(shadows)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(queue)
    client.close()


def _django(root: Path, env: dict, code: str) -> str:
    script = "import django; django.setup()\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_beside_django_pipeline_or_a_projects_own_modules_everything_works(project):
    root, env, queue, shadowed = project
    check = subprocess.run([sys.executable, "-m", "django", "check"], cwd=root, env=env, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-3000:]
    migrate = subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    assert "ACTION" in _django(root, env, SAVE)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "deferred_confirmation.workers", "worker",
                               "-Q", queue, "-c", "1", "-l", "WARNING", "--without-mingle", "--without-gossip",
                               "-n", f"{queue}@localhost"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any((root / "mail").iterdir()) and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read()[-3000:]
            time.sleep(0.2)
        assert any((root / "mail").iterdir()), "the worker mailed nothing"
        assert "CONFIRM confirmed" in _django(root, env, CONFIRM)
        deadline = time.monotonic() + 60
        while "APPLIED applied" not in (out := _django(root, env, CHECK_APPLIED)) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert "APPLIED applied new@example.com" in out
    theirs, workers, ours = re.search(r"OWNERS (\S+) (\S+) (\S+)", out).groups()
    site = root.parent / "site"
    assert ours.startswith(str(site / "deferred_confirmation")), ours  # ours: from the wheel
    if shadowed:  # the project's own pipeline.py and workers.py are still the ones it imports
        assert (theirs, workers) == (str(root / "pipeline.py"), str(root / "workers.py"))
    else:  # django-pipeline is still django-pipeline, and no `workers` module was installed
        assert theirs == str(site / "pipeline" / "__init__.py") and workers == "none"
