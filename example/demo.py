"""The whole pipeline, end to end, on embedded defaults: ``python -m example.demo`` (``make demo``).

Runs in a fresh temporary directory (SQLite database, mail files, letters, embedded Redis socket) that is
removed at the end.  Starts a fake Twilio in this process (``example.fakes.twilio``), then a real Celery
worker, celery beat and Django's development server as subprocesses, then drives the example site over
HTTP like a person would, through all four channels:

1. an email change: log in, submit the form, see that nothing changed, read the mail, open the link
   (GET does not confirm), press Confirm (POST), follow the status until ``applied``, see the new
   address in the database, and see the used link refused;
2. a sign-up: the account exists only once its link is confirmed; the password is sealed at rest; the
   status page belongs to the browser that signed up (another one gets 404);
3. a phone change: read the text message the worker sent through the fake Twilio, post its signed
   delivery report to the webhook, type a wrong code (attempts left), then the right one;
4. a postal address change: find the letter the worker rendered to PDF, read the code printed in it
   (with pypdf) and type it in lower case;
5. a bank account change: read the two micro-deposits with ``manage.py export_payouts --json`` and type
   them in the reverse order.

Prints every step with the milliseconds elapsed since start.  Exits 0 on success, 1 with the reason and
the tail of each process's log on any failure or timeout.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import html
import http.cookiejar
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DEADLINE = 60  # seconds for the whole run; every wait below is bounded well inside it
STEP_TIMEOUT = 25  # seconds for any single wait (server up, mail delivered, change applied)
HTTP_TIMEOUT = 10
MAIL_SEPARATOR = b"\n" + b"-" * 79 + b"\n"  # what django's file-based backend writes after each message
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
STATUS_LINK_RE = re.compile(r'href="(/confirm/status/([0-9a-f-]{36})/)"')
LINK_RE = re.compile(r"(https?://[^\s\"'<>]+/confirm/([A-Za-z0-9_-]{43})/)")
TOKEN_RE = re.compile(r"(?<=/confirm/)([A-Za-z0-9_-]{6})[A-Za-z0-9_-]{37}(?=/)")
CODE_PAGE_RE = re.compile(r"/confirm/code/([0-9a-f-]{36})/")
DEPOSITS_PAGE_RE = re.compile(r"/confirm/deposits/([0-9a-f-]{36})/")
STATUS_PAGE_RE = re.compile(r"/confirm/status/([0-9a-f-]{36})/")
ATTEMPTS_RE = re.compile(r"(\d+) attempts? left")
FORM_ERRORS_RE = re.compile(r'<div class="error" role="alert" id="form-errors">(.*?)</div>', re.S)
SMS_CODE_RE = re.compile(r"\A(\d{6}) is your confirmation code")
TWILIO_FROM = "+15005550006"  # Twilio's test number that "sends" anything

STARTED = time.monotonic()


class DemoError(Exception):
    """A step did not do what the demo expects; the message says which and why."""


def say(message: str) -> None:
    print(f"[{int((time.monotonic() - STARTED) * 1000):5d} ms] {message}", flush=True)


def short(secret: str) -> str:
    return secret[:6] + "…"


def short_id(action_id: str) -> str:
    return action_id[:8] + "…"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- processes -----------------------------------------------------------------------------------------

class Processes:
    """The subprocesses this demo started, each logging to a file in the var dir."""

    def __init__(self, log_dir: Path, env: dict[str, str]):
        self.log_dir = log_dir
        self.env = env
        self.running: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.failed_run: str | None = None  # a command run to completion that failed (its log is worth showing)

    def run(self, name: str, *args: str, timeout: float = STEP_TIMEOUT, capture: bool = False) -> str:
        """Run a command to completion; DemoError if it fails or takes too long.  With ``capture``, its
        standard output is returned rather than logged (its standard error is logged)."""
        log = self.log_dir / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            try:
                done = subprocess.run(args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE if capture else out,
                                      stderr=out if capture else subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                self.failed_run = name
                raise DemoError(f"{name} did not finish within {timeout} s") from None
        if done.returncode != 0:
            self.failed_run = name
            raise DemoError(f"{name} exited with code {done.returncode}")
        return done.stdout.decode() if capture else ""

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            # Own session: a Ctrl-C in the terminal reaches only the demo, which then stops these in order.
            proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.running[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise DemoError(f"the {name} process exited unexpectedly with code {proc.returncode}")

    def stop_all(self, grace: float = 10) -> None:
        """SIGTERM each process we started (warm shutdown), then SIGKILL its process group if it lingers."""
        for proc in self.running.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for proc in self.running.values():
            # The group holds the worker's pool children: make sure none is left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def print_log_tails(self, lines: int = 25) -> None:
        for name, log in self.logs.items():
            if name not in self.running and name != self.failed_run:
                continue
            try:
                text = log.read_text(errors="replace").rstrip().splitlines()[-lines:]
            except OSError:
                continue
            print(f"\n----- last {len(text)} lines of the {name} log -----", file=sys.stderr)
            # The web server's access log has the links in full: show them cut, as everywhere else.
            print(TOKEN_RE.sub(r"\1…", "\n".join(text)) or "(empty)", file=sys.stderr)


# --- HTTP ----------------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # redirects are returned to the caller, who follows them explicitly


class Browser:
    """A tiny HTTP client with a cookie jar (requests is not a dependency)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # never send 127.0.0.1 through a proxy from the environment
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )

    def request(self, method: str, path: str, data: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(urllib.parse.urljoin(self.base, path), data=body, method=method,
                                     headers=headers or {})
        try:
            with self.opener.open(req, timeout=HTTP_TIMEOUT) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:  # 3xx (not followed) and 4xx/5xx: still a response
            with error:
                return error.code, dict(error.headers), error.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            raise DemoError(f"{method} {path} failed: {exc}") from None

    def get(self, path: str, **kwargs) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path, **kwargs)

    def post_form(self, path: str, page: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """POST ``fields`` with the CSRF token of ``page`` (the form's page, fetched before)."""
        found = CSRF_RE.search(page)
        if not found:
            raise DemoError(f"no CSRF token on the page of {path}")
        return self.request("POST", path, {"csrfmiddlewaretoken": html.unescape(found.group(1)), **fields},
                            headers={"Referer": urllib.parse.urljoin(self.base, path)})

    def state(self, action_id: str) -> dict:
        status, _, body = self.get(f"/confirm/status/{action_id}/", headers={"Accept": "application/json"})
        if status != 200:
            raise DemoError(f"status endpoint of {short_id(action_id)} answered {status}")
        return json.loads(body)


def expect(status: int, wanted: int, what: str, body: str = "") -> None:
    if status != wanted:
        title = re.search(r"<title>(.*?)</title>", body, re.S)
        detail = f" ({title.group(1).strip()})" if title else ""
        raise DemoError(f"{what}: expected HTTP {wanted}, got {status}{detail}")


# --- waiting -------------------------------------------------------------------------------------------

def wait_for(what: str, probe, procs: Processes, timeout: float = STEP_TIMEOUT, interval: float = 0.05):
    """Call ``probe`` until it returns something truthy; DemoError after ``timeout`` or if a process died."""
    deadline = time.monotonic() + timeout
    while True:
        procs.check_alive()
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def web_answers(browser: Browser):
    def probe():
        try:
            return browser.get("/login/")[0] == 200
        except DemoError:
            return False
    return probe


def worker_answers():
    from deferred_confirmation.workers import app

    def probe():
        try:
            return app.control.ping(timeout=0.3)
        except Exception:
            return None
    return probe


def find_mail(mail_dir: Path, action_id: str):
    """The message the worker wrote for ``action_id`` (matched on its X-Deferred-Action header), or None."""
    def probe():
        for path in sorted(mail_dir.glob("*.log")) if mail_dir.is_dir() else []:
            # Only messages followed by their separator are complete; the worker may be writing the last one.
            for raw in path.read_bytes().split(MAIL_SEPARATOR)[:-1]:
                message = email.message_from_bytes(raw.lstrip(b"\n"), policy=email.policy.default)
                if message.get("X-Deferred-Action") == action_id:
                    return message
        return None
    return probe


def link_in(message) -> tuple[str, str]:
    body = message.get_body(preferencelist=("plain",))
    found = LINK_RE.search(body.get_content() if body else "")
    if not found:
        raise DemoError("no confirmation link in the mail")
    return found.group(1), found.group(2)


def settled(browser: Browser, action_id: str):
    def probe():
        state = browser.state(action_id)
        if state["state"] in ("failed", "expired", "cancelled", "locked"):
            raise DemoError(f"action {short_id(action_id)} ended as {state['state']}: {state.get('failure_reason')}")
        return state if state["state"] == "applied" else None
    return probe


# --- the story -----------------------------------------------------------------------------------------

def confirm_by_mail(browser: Browser, procs: Processes, mail_dir: Path, action_id: str) -> tuple[str, str]:
    """Read the mail for ``action_id``, open its link, press Confirm, wait for applied.

    Returns the link's path and the Confirm page (with its CSRF token)."""
    message = wait_for(f"the mail of action {short_id(action_id)}", find_mail(mail_dir, action_id), procs)
    link, token = link_in(message)
    path = urllib.parse.urlsplit(link).path
    say(f"worker mailed {message['To']}: \"{message['Subject']}\" with link "
        f"{link.replace(token, short(token))}")

    status, _, page = browser.get(path)
    expect(status, 200, "GET of the confirmation link", page)
    state = browser.state(action_id)["state"]
    if state not in ("pending", "notified") or "Confirm</button>" not in page:
        raise DemoError(f"the GET of the link should only show a Confirm button; the action is {state}")
    say(f"GET link -> 200, a page with a Confirm button; action still {state} (GET never confirms)")

    status, headers, body = browser.post_form(path, page, {})
    expect(status, 302, "POST Confirm", body)
    say(f"POST Confirm -> 302 to {headers.get('Location')}")

    polls = 0

    def counted():
        nonlocal polls
        polls += 1
        return settled(browser, action_id)()
    state = wait_for(f"action {short_id(action_id)} to be applied", counted, procs)
    say(f"status (Accept: application/json) after {polls} poll{'s' if polls > 1 else ''}: "
        f"state={state['state']}, applied_at={state['applied_at']}")
    return path, page


def demo_email_change(base: str, procs: Processes, mail_dir: Path) -> Browser:
    from django.contrib.auth import get_user_model

    from deferred_confirmation.django_integration.models import DeferredAction

    user_model = get_user_model()
    user_model.objects.create_user("alice", "alice@example.com", "correct horse battery staple")
    say("created user alice <alice@example.com>")

    alice = Browser(base)
    status, _, page = alice.get("/login/")
    expect(status, 200, "GET /login/", page)
    status, headers, body = alice.post_form("/login/", page, {"username": "alice",
                                                              "password": "correct horse battery staple"})
    expect(status, 302, "logging in", body)
    say(f"logged in over HTTP as alice -> 302 to {headers.get('Location')}")

    status, _, page = alice.get("/account/email/")
    expect(status, 200, "GET /account/email/", page)
    status, _, body = alice.post_form("/account/email/", page, {"email": "alice.new@example.com"})
    expect(status, 202, "submitting the email change", body)
    found = STATUS_LINK_RE.search(body)
    if not found:
        raise DemoError("the 'check your inbox' page has no status link")
    action_id = found.group(2)
    say(f"submitted email change -> {status}, action {short_id(action_id)} "
        f"{alice.state(action_id)['state']}")

    stored = user_model.objects.get(username="alice")
    if stored.email != "alice@example.com":
        raise DemoError(f"the email changed before confirmation: {stored.email}")
    say(f"database: alice's email is still {stored.email}; "
        f"DeferredAction.objects.pending_for(alice) = {DeferredAction.objects.pending_for(stored)}")

    path, confirm_page = confirm_by_mail(alice, procs, mail_dir, action_id)

    stored.refresh_from_db()
    if stored.email != "alice.new@example.com":
        raise DemoError(f"applied, but alice's email in the database is {stored.email}")
    say(f"database: alice's email is now {stored.email}")

    status, _, body = alice.post_form(path, confirm_page, {})
    expect(status, 409, "POST of the used link", body)
    status, _, body = alice.get(path)
    expect(status, 409, "GET of the used link", body)
    say("the used link again -> 409 Already confirmed (applied exactly once)")
    return alice


def demo_sign_up(base: str, procs: Processes, mail_dir: Path) -> None:
    from django.contrib.auth import get_user_model

    from deferred_confirmation.django_integration.models import DeferredAction

    user_model = get_user_model()
    password = "a long demo passphrase"
    visitor = Browser(base)
    status, _, page = visitor.get("/signup/")
    expect(status, 200, "GET /signup/", page)
    status, _, body = visitor.post_form("/signup/", page, {"username": "bob", "email": "bob@example.com",
                                                           "password": password})
    expect(status, 202, "submitting the sign-up", body)
    found = STATUS_LINK_RE.search(body)
    if not found:
        raise DemoError("the 'check your inbox' page has no status link")
    action_id = found.group(2)
    say(f"submitted sign-up for bob -> {status}, action {short_id(action_id)} {visitor.state(action_id)['state']}")
    status, _, body = Browser(base).get(f"/confirm/status/{action_id}/")
    expect(status, 404, "the sign-up's status page from another browser", body)
    say("the same status page from another browser -> 404 (an action's pages belong to the session that saved it)")

    if user_model.objects.filter(username="bob").exists():
        raise DemoError("the account bob exists before confirmation")
    stored = json.dumps(DeferredAction.objects.get(pk=action_id).form_data)
    if password in stored:
        raise DemoError("the pending sign-up's password is stored in clear")
    say("database: no user bob yet; the stored form data holds the password only sealed (encrypted)")

    confirm_by_mail(visitor, procs, mail_dir, action_id)

    bob = user_model.objects.filter(username="bob").first()
    if bob is None or not bob.check_password(password) or bob.email != "bob@example.com":
        raise DemoError("applied, but the account bob is missing or wrong")
    say(f"database: user bob <{bob.email}> exists and his password works")


# --- the code, deposit and letter channels ------------------------------------------------------------

def submit_change(browser: Browser, path: str, fields: dict[str, str], what: str, page_re: re.Pattern
                  ) -> tuple[str, str]:
    """Submit the form at ``path``; it must redirect to a page matching ``page_re``.  Returns (page, action id)."""
    status, _, page = browser.get(path)
    expect(status, 200, f"GET {path}", page)
    status, headers, body = browser.post_form(path, page, fields)
    expect(status, 302, f"submitting the {what}", body)
    location = headers.get("Location", "")
    found = page_re.search(location)
    if not found:
        raise DemoError(f"the {what} redirected to {location!r}, not to the expected page")
    action_id = found.group(1)
    say(f"submitted {what} -> 302 to {location}; action {short_id(action_id)} "
        f"{browser.state(action_id)['state']}")
    return location, action_id


def sent_delivery(action_id: str, channel: str, procs: Processes):
    """The action's delivery over ``channel`` once the worker has handed its secret to the provider."""
    from deferred_confirmation.django_integration.models import Delivery

    def probe():
        delivery = Delivery.objects.filter(action_id=action_id, channel=channel).first()
        if delivery is not None and delivery.status == "failed":
            raise DemoError(f"the {channel} delivery failed: {delivery.status_detail}")
        return delivery if delivery is not None and delivery.status == "sent" and delivery.provider_ref else None
    return wait_for(f"the worker to send the {channel} secret of {short_id(action_id)}", probe, procs)


def enter_secret(browser: Browser, procs: Processes, path: str, page: str, fields: dict[str, str],
                 action_id: str, shown: str) -> None:
    """POST the secret on its page, expect the redirect to the status page, wait for applied."""
    status, headers, body = browser.post_form(path, page, fields)
    expect(status, 302, f"entering {shown}", body)
    say(f"entered {shown} -> 302 to {headers.get('Location')}")
    polls = 0

    def counted():
        nonlocal polls
        polls += 1
        return settled(browser, action_id)()
    state = wait_for(f"action {short_id(action_id)} to be applied", counted, procs)
    say(f"status (Accept: application/json) after {polls} poll{'s' if polls > 1 else ''}: "
        f"state={state['state']}, applied_at={state['applied_at']}")


def demo_phone_change(alice: Browser, procs: Processes, fake) -> None:
    from deferred_confirmation.django_integration.models import Delivery
    from example.accounts.models import Profile

    code_path, action_id = submit_change(alice, "/account/phone/", {"phone": "(202) 555-0123"},
                                         "phone change to (202) 555-0123", CODE_PAGE_RE)
    status, _, page = alice.get(code_path)
    expect(status, 200, "GET of the code page", page)
    profile = Profile.objects.get(user__username="alice")
    if profile.phone:
        raise DemoError(f"the phone number changed before confirmation: {profile.phone}")
    say("code page -> 200; database: alice's profile has no phone number yet")

    def sms():
        return next((m for m in fake.messages if code_path in m["body"]), None)
    message = wait_for(f"the SMS of action {short_id(action_id)}", sms, procs)
    found = SMS_CODE_RE.match(message["body"])
    if not found:
        raise DemoError(f"no code in the SMS: {message['body']!r}")
    code = found.group(1)
    say(f"worker texted {message['to']} from {message['from']} through the fake Twilio: "
        f"\"{message['body'].splitlines()[0]}\"")

    # Twilio reports delivery to the status webhook, signed with the auth token.
    delivery = sent_delivery(action_id, "sms", procs)
    if delivery.provider_ref != message["sid"]:
        raise DemoError(f"the delivery holds {delivery.provider_ref}, not the SMS's sid {message['sid']}")
    url, params, signature = fake.status_callback(message["sid"], "delivered")
    status, _, body = Browser(url).request("POST", url, params, headers={"X-Twilio-Signature": signature})
    expect(status, 200, "the signed Twilio status callback", body)
    delivery.refresh_from_db()
    if delivery.status != "delivered":
        raise DemoError(f"after the status callback the delivery is {delivery.status}")
    status, _, body = Browser(url).request("POST", url, params, headers={"X-Twilio-Signature": "forged"})
    expect(status, 403, "a status callback with a wrong signature", body)
    say(f"POSTed the fake Twilio's signed status callback (delivered) to {urllib.parse.urlsplit(url).path} -> 200, "
        f"delivery {Delivery.objects.get(pk=delivery.pk).status}; the same with a wrong signature -> 403")

    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    status, _, page = alice.post_form(code_path, page, {"code": wrong})
    expect(status, 400, "a wrong code", page)
    shown = FORM_ERRORS_RE.search(page)
    message = " ".join(html.unescape(shown.group(1)).split()) if shown else ""
    if not ATTEMPTS_RE.search(message):
        raise DemoError("the wrong code's page does not say how many attempts are left")
    say(f"entered a wrong code {wrong} -> 400, \"{message}\"")

    enter_secret(alice, procs, code_path, page, {"code": f"{code[:3]} {code[3:]}"}, action_id,
                 f"the texted code as \"{code[:3]} {code[3:]}\"")
    profile.refresh_from_db()
    if profile.phone != "+12025550123":
        raise DemoError(f"applied, but alice's phone number in the database is {profile.phone!r}")
    say(f"database: alice's phone number is now {profile.phone} (E.164)")


def pdf_text(path: Path) -> str:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(path.read_bytes()))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def demo_address_change(alice: Browser, procs: Processes, letters_dir: Path) -> None:
    from example.accounts.models import Profile

    address = {"address_name": "Alice Example", "address_line1": "1600 Pennsylvania Ave NW", "address_line2": "",
               "address_city": "Washington", "address_state": "dc", "address_postal_code": "20500",
               "address_country": "US"}
    status_path, action_id = submit_change(alice, "/account/address/", address,
                                           "address change to 1600 Pennsylvania Ave NW", STATUS_PAGE_RE)
    status, _, page = alice.get(status_path)
    expect(status, 200, "GET of the status page", page)
    found = CODE_PAGE_RE.search(page)
    if not found or found.group(1) != action_id:
        raise DemoError("the status page of the letter's change has no link to its code page")
    code_path = found.group(0)
    profile = Profile.objects.get(user__username="alice")
    if profile.address_line1:
        raise DemoError(f"the address changed before confirmation: {profile.address_line1}")
    say(f"status page -> 200, links to the code page {code_path}; database: alice has no address yet")

    delivery = sent_delivery(action_id, "letter", procs)
    pdf = letters_dir / delivery.provider_ref
    if not pdf.is_file() or not pdf.read_bytes().startswith(b"%PDF-"):
        raise DemoError(f"no PDF letter at {pdf}")
    from deferred_confirmation.pipeline.channels.letter import ALPHABET

    text = pdf_text(pdf)
    # not inside the code page's URL, whose UUID can hold a group like "3464-4769"
    codes = re.findall(rf"(?<![\w/-])([{ALPHABET}]{{4}}-[{ALPHABET}]{{4}})(?![\w/-])", text)
    if len(codes) != 1:
        raise DemoError(f"expected one code in the letter, found {codes}")
    code = codes[0]
    if "1600 PENNSYLVANIA AVE NW" not in text.upper() or code_path not in text:
        raise DemoError("the letter lacks the new address or the code page's address")
    say(f"worker rendered the letter {letters_dir.name}/{pdf.name} ({pdf.stat().st_size // 1024} kB); "
        f"pypdf reads the address, the code page's URL and the code {code}")

    status, _, page = alice.get(code_path)
    expect(status, 200, "GET of the code page", page)
    enter_secret(alice, procs, code_path, page, {"code": code.lower()}, action_id,
                 f"the letter's code as \"{code.lower()}\"")
    profile.refresh_from_db()
    if (profile.address_line1, profile.address_state, profile.address_postal_code) != (
            "1600 Pennsylvania Ave NW", "DC", "20500"):
        raise DemoError(f"applied, but alice's address in the database is {profile.address_line1!r}")
    say(f"database: alice's address is now {profile.address_line1}, {profile.address_city}, "
        f"{profile.address_state} {profile.address_postal_code}")


def demo_bank_account(alice: Browser, procs: Processes) -> None:
    from deferred_confirmation.django_integration.models import DeferredAction
    from example.accounts.models import Profile

    account = {"bank_holder": "Alice Example", "bank_iban": "", "bank_routing_number": "111000025",
               "bank_account_number": "000123456789"}
    deposits_path, action_id = submit_change(alice, "/account/bank/", account,
                                             "bank account change (routing 111000025, account …6789)",
                                             DEPOSITS_PAGE_RE)
    status, _, page = alice.get(deposits_path)
    expect(status, 200, "GET of the deposits page", page)
    profile = Profile.objects.get(user__username="alice")
    if profile.bank_account_number:
        raise DemoError("the bank account changed before confirmation")
    if account["bank_account_number"] in json.dumps(DeferredAction.objects.get(pk=action_id).form_data):
        raise DemoError("the stored change holds the account number in clear")
    say("deposits page -> 200; database: no bank account yet; the stored change holds the account number "
        "only sealed")

    sent_delivery(action_id, "microdeposit", procs)
    out = procs.run("export_payouts", sys.executable, "manage.py", "export_payouts", "--json",
                    "--action", action_id, capture=True)
    rows = json.loads(out)
    if len(rows) != 1:
        raise DemoError(f"export_payouts listed {len(rows)} payouts for the action, not 1")
    row = rows[0]
    first, second = row["amounts_decimal"]
    say(f"manage.py export_payouts --json: pay {row['currency']} {first} and {second} to {row['account']['holder']}"
        f" (routing {row['account']['routing_number']}, account …{row['account']['account_number'][-4:]}); "
        f"marked exported")

    enter_secret(alice, procs, deposits_path, page, {"first": second, "second": first}, action_id,
                 f"the amounts in reverse order, {second} and {first}")
    profile.refresh_from_db()
    if (profile.bank_routing_number, profile.bank_account_number) != ("111000025", "000123456789"):
        raise DemoError("applied, but alice's bank account in the database is not the new one")
    say(f"database: alice's bank account is now routing {profile.bank_routing_number}, "
        f"account …{profile.bank_account_number[-4:]}")


def describe_schedule() -> str:
    from django_celery_beat.models import PeriodicTask

    def every(interval) -> str:
        return interval.period.rstrip("s") if interval.every == 1 else f"{interval.every} {interval.period}"

    tasks = PeriodicTask.objects.filter(task__startswith="confirmation.").select_related("interval").order_by("id")
    if not tasks:
        raise DemoError("the migration did not create the beat schedule")
    return ", ".join(f"{task.task} every {every(task.interval)}" for task in tasks)


def main() -> int:
    var_dir = Path(tempfile.mkdtemp(prefix="dc-demo-"))  # short: the Redis unix socket path must be < 108 chars
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Embedded defaults whatever the shell has set: the temp dir's SQLite, mail files and Redis.
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "EMAIL_BACKEND", "CELERY_TASK_ALWAYS_EAGER"):
        os.environ.pop(name, None)
    from example.fakes.twilio import FakeTwilio

    # Twilio's Messages API, faked on loopback: the worker's twilio SDK sends its texts here.
    fake = FakeTwilio().start()
    os.environ.update(EXAMPLE_VAR_DIR=str(var_dir), SITE_URL=base, DJANGO_SETTINGS_MODULE="example.settings",
                      PYTHONUNBUFFERED="1", TWILIO_BASE_URL=fake.url, TWILIO_ACCOUNT_SID=fake.account_sid,
                      TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_FROM=TWILIO_FROM)
    (var_dir / "logs").mkdir()
    procs = Processes(var_dir / "logs", dict(os.environ))
    failure: str | None = "did not finish"

    def out_of_time(*_):
        raise DemoError(f"the demo did not finish within {RUN_DEADLINE} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(RUN_DEADLINE)
    try:
        import django

        django.setup()  # imports example.settings, which starts the embedded Redis in var_dir
        from django.conf import settings

        mail_dir = Path(settings.EMAIL_FILE_PATH)
        letters_dir = Path(settings.STORAGES["letters"]["OPTIONS"]["location"])
        say(f"var dir {var_dir}: SQLite, mail in {mail_dir.name}/, letters in {letters_dir.name}/, "
            f"embedded Redis at {settings.CELERY_BROKER_URL}; fake Twilio at {fake.url}")

        procs.run("migrate", sys.executable, "manage.py", "migrate", "--no-input")
        say("manage.py migrate: tables created, and the beat schedule: " + describe_schedule())

        procs.start("worker", sys.executable, "-m", "celery", "-A", "deferred_confirmation.workers", "worker", "-l",
                    "WARNING", "-c", "2")
        procs.start("beat", sys.executable, "-m", "celery", "-A", "deferred_confirmation.workers", "beat", "-S",
                    "django",
                    "-l", "WARNING", "--pidfile", str(var_dir / "beat.pid"))
        procs.start("web", sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload")
        say(f"started celery worker (pid {procs.running['worker'].pid}), beat (pid {procs.running['beat'].pid}), "
            f"runserver (pid {procs.running['web'].pid})")
        wait_for("the web server", web_answers(Browser(base)), procs, interval=0.1)
        say(f"web server answering at {base}/")
        replies = wait_for("the Celery worker to answer a ping", worker_answers(), procs, interval=0.1)
        say(f"worker answering: {', '.join(name for reply in replies for name in reply)}")

        print("--- 1. email change (edit): applied only after the link is confirmed", flush=True)
        alice = demo_email_change(base, procs, mail_dir)
        print("--- 2. sign-up (create): the account is created only after confirmation", flush=True)
        demo_sign_up(base, procs, mail_dir)
        print("--- 3. phone change: a code by SMS (Twilio's API, faked), a wrong code first", flush=True)
        demo_phone_change(alice, procs, fake)
        print("--- 4. postal address change: a code printed in a letter (PDF)", flush=True)
        demo_address_change(alice, procs, letters_dir)
        print("--- 5. bank account change: two micro-deposits, read from the payouts ledger", flush=True)
        demo_bank_account(alice, procs)
        procs.check_alive()
        failure = None
        say("all steps passed")
        return 0
    except DemoError as exc:
        failure = str(exc)
        return 1
    except KeyboardInterrupt:
        failure = "interrupted"
        return 130
    except Exception as exc:
        import traceback

        traceback.print_exc()
        failure = f"unexpected error: {exc!r}"
        return 1
    finally:
        signal.alarm(0)
        if failure:
            print(f"\nDEMO FAILED: {failure}", file=sys.stderr, flush=True)
        procs.stop_all()
        fake.stop()
        if failure:
            procs.print_log_tails()
        _stop_redis(var_dir)
        shutil.rmtree(var_dir, ignore_errors=True)
        if failure:
            print(f"\nDEMO FAILED: {failure} (logs above; temporary files removed)", file=sys.stderr, flush=True)
        else:
            say("stopped worker, beat, web server, the fake Twilio and the embedded Redis; removed the "
                "temporary directory")


def _stop_redis(var_dir: Path) -> None:
    """Stop the embedded Redis this run started and wait for it to exit (it saves on shutdown)."""
    from example import embedded_redis

    pid_file = var_dir / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    embedded_redis.stop(var_dir)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
