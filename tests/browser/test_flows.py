"""The example site in a real browser (headless Chromium), each flow with JavaScript on and off.

A person logs in, asks for a change, receives the secret (the mailed link from the file mail backend, the
texted code from the fake Twilio, the deposit amounts from ``manage.py export_payouts --json``), enters it,
and watches the status page turn to "applied" by itself: the page reloads itself with a meta refresh, which
needs no JavaScript; the test never reloads it.  To see the in-between state for sure, the worker is paused
(SIGSTOP) from the moment the secret is entered until the status page has shown "confirmed".

A real browser also checks what an HTTP client does not: it sends an Origin header with every POST, which
Django's CSRF check compares with the site (under a no-referrer policy the browser sends "Origin: null" and
every form on these pages would get 403).

Every page visited is checked for accessibility (tests/browser/a11y.py) and saved as a screenshot in
test-artifacts/screenshots/.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.a11y import check_page
from tests.browser.conftest import BROWSER
from tests.browser.site import PASSWORD, ExampleSite

pytestmark = BROWSER

STATUS_PATH_RE = re.compile(r"/confirm/status/([0-9a-f-]{36})/\Z")
ENTRY_PATH_RE = re.compile(r"/confirm/(?:code|deposits)/([0-9a-f-]{36})/\Z")


def user_for(flow: str, js: bool) -> str:
    return f"{flow}_{'js' if js else 'nojs'}"


def submit(page: Page, button: str = "Continue", *, status: int | None = None):
    """Press a form's button and wait for the page it leads to; return the POST's response."""
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()
    if status is not None:
        assert posted.value.status == status, f"POST {posted.value.url} -> {posted.value.status}, not {status}"
    return posted.value


def log_in(page: Page, shot, username: str) -> None:
    response = page.goto("/login/")
    assert response.status == 200
    check_page(page, expect_errors=False)
    shot(page, "login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    submit(page, "Log in", status=302)
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()
    shot(page, "home")


def open_form(page: Page, shot, link: str, name: str) -> None:
    page.get_by_role("link", name=link).click()
    page.wait_for_load_state()
    check_page(page, expect_errors=False)
    shot(page, name)


def watch_status_until_applied(page: Page, shot, site: ExampleSite, action_id: str) -> None:
    """The worker is paused: the status page says "confirmed" and reloads itself (meta refresh) while it
    stays so.  Resume the worker and wait, without reloading from here, until the page says "applied"; then
    it stops reloading."""
    assert STATUS_PATH_RE.search(page.url), f"not on a status page: {page.url}"
    state = page.locator("#state")
    expect(state).to_have_text("confirmed")
    refresh = page.locator('meta[http-equiv="refresh"]')
    expect(refresh).to_have_count(1)
    page.wait_for_event("load", timeout=10_000)  # reloaded by itself, with or without JavaScript
    expect(state).to_have_text("confirmed")
    check_page(page)  # right after a load: well inside the refresh interval
    shot(page, "status-confirmed")
    loads = []
    page.on("load", lambda _: loads.append(page.url))
    site.resume_worker()
    expect(state).to_have_text("applied", timeout=20_000)
    assert loads, "the status page said applied without reloading itself"
    expect(page.get_by_text("Done: the change has been made.")).to_be_visible()
    expect(refresh).to_have_count(0)  # final: no more reloading
    check_page(page)
    shot(page, "status-applied")
    assert site.state(page, action_id)["state"] == "applied"


def test_email_change(page: Page, shot, example_site: ExampleSite, js: bool):
    """Change the email address, open the mailed link, press Confirm, watch the status turn to applied."""
    site, username = example_site, user_for("email", js)
    new_email = f"{username}.new@example.org"
    log_in(page, shot, username)
    open_form(page, shot, "your email address", "change-form")
    page.get_by_label("New email address").fill(new_email)
    submit(page, status=202)
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    check_page(page)
    shot(page, "sent")
    status_link = page.get_by_role("link", name="Follow the status of your change")
    action_id = STATUS_PATH_RE.search(status_link.get_attribute("href")).group(1)

    recipient, link_path = site.mailed_link(action_id)
    assert recipient == new_email
    site.wait_for_state(page, action_id, "notified")
    response = page.goto(link_path)
    assert response.status == 200
    confirm = page.get_by_role("button", name="Confirm", exact=True)
    expect(confirm).to_be_focused()
    check_page(page)
    shot(page, "link")
    assert site.state(page, action_id)["state"] == "notified", "opening the link (GET) must not confirm"

    with site.worker_paused():
        submit(page, "Confirm", status=302)
        watch_status_until_applied(page, shot, site, action_id)

    page.goto("/")
    expect(page.get_by_text(f"Signed in as {username} ({new_email})")).to_be_visible()
    response = page.goto(link_path)  # the used link is refused, with a clear page
    assert response.status == 409
    expect(page.get_by_role("alert")).to_contain_text("already been confirmed")
    check_page(page)
    shot(page, "link-used")


def test_phone_change(page: Page, shot, example_site: ExampleSite, js: bool):
    """A wrong number first (error at the field), then a wrong SMS code (attempts left), then the right one."""
    site, username = example_site, user_for("phone", js)
    number, e164 = ("(202) 555-0123", "+12025550123") if js else ("(202) 555-0124", "+12025550124")
    log_in(page, shot, username)
    open_form(page, shot, "your mobile number", "change-form")

    phone = page.get_by_label("New mobile number")
    phone.fill("12")
    submit(page, status=400)
    snap = check_page(page, expect_errors=True)
    assert snap.active_id == "id_phone"
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert")).to_contain_text("Enter a valid phone number")
    shot(page, "change-form-error")
    phone.fill(number)
    submit(page, status=302)

    action_id = ENTRY_PATH_RE.search(page.url).group(1)
    code_field = page.get_by_label("Confirmation code")
    expect(code_field).to_be_focused()
    check_page(page, expect_errors=False)
    shot(page, "code")
    code = site.texted_code(page.url.removeprefix(site.base))

    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    code_field.fill(wrong)
    submit(page, "Confirm", status=400)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("That code is wrong or has expired.")
    expect(alert).to_contain_text("4 attempts left.")
    snap = check_page(page, expect_errors=True)
    assert snap.active_id == "id_code", "after a wrong code, focus is on the code field, to type it again"
    assert alert.get_attribute("id") in page.locator("#id_code").get_attribute("aria-describedby").split()
    shot(page, "code-wrong")

    site.wait_for_state(page, action_id, "notified")
    with site.worker_paused():
        page.get_by_label("Confirmation code").fill(f"{code[:3]} {code[3:]}")
        submit(page, "Confirm", status=302)
        watch_status_until_applied(page, shot, site, action_id)
    page.goto("/")
    expect(page.get_by_text(f"Mobile number: {e164}")).to_be_visible()


def test_bank_account(page: Page, shot, example_site: ExampleSite, js: bool):
    """A malformed amount first (error at the field, no attempt used), then the two deposits, reversed."""
    site, username = example_site, user_for("bank", js)
    log_in(page, shot, username)
    open_form(page, shot, "your bank account", "change-form")
    page.get_by_label("Account holder").fill("Alice Example")
    page.get_by_label("US routing number").fill("111000025")
    page.get_by_label("US account number").fill("000123456789")
    submit(page, status=302)

    action_id = ENTRY_PATH_RE.search(page.url).group(1)
    first_field, second_field = page.get_by_label("First amount"), page.get_by_label("Second amount")
    expect(first_field).to_be_focused()
    check_page(page, expect_errors=False)
    shot(page, "deposits")
    first, second = site.deposit_amounts(page, action_id)

    first_field.fill("twelve")
    second_field.fill(first)
    submit(page, "Confirm", status=400)
    snap = check_page(page, expect_errors=True)
    assert snap.active_id == "id_first"
    expect(page.get_by_role("alert")).to_contain_text("Enter an amount between 0.01 and 0.99")
    expect(page.get_by_role("alert")).not_to_contain_text("attempts left")  # a typo costs no attempt
    expect(second_field).to_have_value(first)  # what was typed stays
    shot(page, "deposits-error")

    with site.worker_paused():
        first_field.fill(second)
        second_field.fill(first)
        submit(page, "Confirm", status=302)
        watch_status_until_applied(page, shot, site, action_id)
    page.goto("/")
    expect(page.get_by_text("Bank account: ending in 6789")).to_be_visible()


def test_javascript_is_off_in_the_nojs_context(chromium):
    """The nojs runs above really have no JavaScript: a script in a page does not run."""
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_content("<title>before</title><script>document.title = 'after'</script>")
        assert page.title() == "before"
    finally:
        context.close()


def test_form_errors(page: Page, shot, example_site: ExampleSite, js: bool):
    """The example's forms: a wrong password (an error of the whole form) and a sign-up with two bad fields."""
    page.goto("/login/")
    page.get_by_label("Username").fill(user_for("email", js))
    page.get_by_label("Password").fill("not the password")
    submit(page, "Log in", status=200)  # LoginView answers a failed login with 200
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Please enter a correct username and password")
    snap = check_page(page, expect_errors=True)
    assert snap.active_id == "id_username"
    assert "form-errors" in page.locator("#id_username").get_attribute("aria-describedby").split()
    shot(page, "login-wrong-password")

    page.goto("/signup/")
    check_page(page, expect_errors=False)
    page.get_by_label("Username").fill(f"newcomer_{'js' if js else 'nojs'}")
    page.get_by_label("Email").fill("not an address")
    submit(page, status=400)  # and no password
    snap = check_page(page, expect_errors=True)
    assert snap.active_id == "id_email", "the focus is on the first field in error"
    for field in ("email", "password"):
        expect(page.locator(f"#id_{field}")).to_have_attribute("aria-invalid", "true")
        assert f"id_{field}_error" in page.locator(f"#id_{field}").get_attribute("aria-describedby").split()
    expect(page.locator("#id_username")).not_to_have_attribute("aria-invalid", "true")
    shot(page, "sign-up-errors")
