"""The Twilio channel's pieces: codes typed back, options, mapping of the SDK's errors, the fake itself."""

from __future__ import annotations

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from deferred_confirmation.pipeline.channels import (
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
    get_channel,
)
from deferred_confirmation.pipeline.channels.sms import (
    TwilioSMSChannel,
    make_http_client,
    map_error,
    rebase,
)
from deferred_confirmation.pipeline.redaction import redact_contacts
from example.fakes.twilio import FakeTwilio
from tests.channels.sms.conftest import FROM, PHONE

VALID = {"plain": "123456", "spaces": "123 456", "dashes": "12-34-56", "padded": "  123456\t", "mixed": "1 2-3 4-5 6"}
INVALID = {
    "short": "12345",
    "long": "1234567",
    "exponent": "1e3456",
    "float": "1234.5",
    "arabic-indic": "\u0661\u0662\u0663\u0664\u0665\u0666",
    "fullwidth": "\uff11\uff12\uff13\uff14\uff15\uff16",
    "one-fullwidth": "12345\uff16",
    "superscript": "12345\u00b2",
    "10kB": "1" * 10_240,
    "null-byte": "123\x00456",
    "letters": "12a456",
    "empty": "",
    "plus": "+123456",
}


@pytest.mark.parametrize("typed", VALID.values(), ids=VALID.keys())
def test_normalize_keeps_ascii_digits_of_the_exact_length(typed):
    assert get_channel("sms").normalize(typed) == "123456"


@pytest.mark.parametrize("typed", [*INVALID.values(), None, 123456, b"123456", ["123456"]],
                         ids=[*INVALID.keys(), "none", "int", "bytes", "list"])
def test_normalize_refuses_everything_else(typed):
    assert get_channel("sms").normalize(typed) is None


@pytest.mark.parametrize("length", [4, 8, 10])
def test_code_length_option(sms_channel, length):
    sms_channel(options={"CODE_LENGTH": length})
    channel = get_channel("sms")
    codes = {channel.make_secret() for _ in range(20)}
    assert all(len(code) == length and code.isascii() and code.isdigit() for code in codes)
    assert len(codes) > 1
    assert channel.normalize("7" * length) == "7" * length
    assert channel.normalize("7" * (length + 1)) is None


@pytest.mark.parametrize("length", [3, 11, "6", True, 0])
def test_bad_code_length_is_a_configuration_error(sms_channel, length):
    sms_channel(options={"CODE_LENGTH": length})
    with pytest.raises(ChannelConfigurationError):
        get_channel("sms").make_secret()
    assert any("CODE_LENGTH" in p for p in TwilioSMSChannel.check_options(get_channel("sms").options))


def test_check_options():
    good = {"ACCOUNT_SID": "AC1", "AUTH_TOKEN": "t", "FROM": FROM}
    assert TwilioSMSChannel.check_options(good) == []
    assert TwilioSMSChannel.check_options({**good, "FROM": None, "MESSAGING_SERVICE_SID": "MG1"}) == []
    problems = TwilioSMSChannel.check_options({"BASE_URL": "ftp://x", "TIMEOUT": 0})
    assert len(problems) == 5  # sid, token, from, timeout, base url


# --- errors ------------------------------------------------------------------------------------------
def rest(status: int, code: int | None, msg: str = "Unable to create record: boom") -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json", msg, code,
                               "POST")


@pytest.mark.parametrize(("exc", "kind", "code"), [
    (rest(400, 21211, f"Unable to create record: The 'To' number {PHONE} is not a valid phone number."),
     PermanentChannelError, "21211"),
    (rest(400, 21610, "Unable to create record: Attempt to send to unsubscribed recipient"),
     PermanentChannelError, "21610"),
    (rest(400, 21612), PermanentChannelError, "21612"),
    (rest(400, 21614), PermanentChannelError, "21614"),
    (rest(400, 21408), PermanentChannelError, "21408"),
    (rest(400, 21606), PermanentChannelError, "21606"),
    (rest(400, 21217), PermanentChannelError, "21217"),
    (rest(400, 21601), PermanentChannelError, "21601"),
    (rest(400, 21999), PermanentChannelError, "21999"),  # an unknown 4xx: retrying will not help
    (rest(401, 20003), PermanentChannelError, "20003"),
    (rest(404, 20404), PermanentChannelError, "20404"),
    (rest(429, 20429), TransientChannelError, "20429"),
    (rest(400, 20429), TransientChannelError, "20429"),
    (rest(500, 500), TransientChannelError, "500"),
    (rest(503, None), TransientChannelError, "503"),
    (requests.ReadTimeout("read timed out"), TransientChannelError, "timeout"),
    (requests.ConnectTimeout("connect timed out"), TransientChannelError, "timeout"),
    (requests.ConnectionError("refused"), TransientChannelError, "connection"),
    (TwilioException("Unable to fetch page"), TransientChannelError, None),
], ids=lambda value: value.__name__ if isinstance(value, type) else None)
def test_errors_are_mapped_to_permanent_or_transient(exc, kind, code):
    error = map_error(exc)
    assert type(error) is kind
    assert error.code == code


def test_reasons_carry_no_phone_number():
    error = map_error(rest(400, 21211, f"Unable to create record: The 'To' number {PHONE} is not valid."))
    assert PHONE not in str(error) and "2025550123" not in str(error)
    assert str(error) == "21211: HTTP 400 from Twilio: The 'To' number +12***23 is not valid."
    assert redact_contacts("call +1 202 555 0123 or 4915123456789") == "call +12***23 or 491***89"


def test_other_exceptions_are_not_ours():
    assert map_error(ValueError("a bug")) is None


def test_rebase_sends_any_twilio_host_to_the_base_url():
    base = "http://127.0.0.1:8123"
    assert rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?To=%2B1", base) == \
        "http://127.0.0.1:8123/2010-04-01/Accounts/AC1/Messages.json?To=%2B1"
    assert rebase("https://api.dublin.ie1.twilio.com/2010-04-01/x", base + "/proxy/") == \
        "http://127.0.0.1:8123/proxy/2010-04-01/x"
    assert rebase("https://example.com/2010-04-01/x", base) == "https://example.com/2010-04-01/x"
    assert rebase("https://api.twilio.com.evil.example/x", base) == "https://api.twilio.com.evil.example/x"


# --- the fake, as the real SDK sees it ------------------------------------------------------------------
def test_the_fake_speaks_twilio_to_the_sdk(fake_twilio: FakeTwilio):
    client = Client(fake_twilio.account_sid, fake_twilio.auth_token,
                    http_client=make_http_client(fake_twilio.url, 2))
    created = client.messages.create(to=PHONE, from_=FROM, body="hello", status_callback="https://x.example/cb",
                                     validity_period=600)
    assert created.sid.startswith("SM") and created.status == "queued" and created.date_sent is None
    listed = client.messages.list(to=PHONE, limit=5)
    assert [m.sid for m in listed] == [created.sid] and listed[0].status == "sent" and listed[0].date_sent
    assert client.messages(created.sid).fetch().body == "hello"
    for i in range(3):
        client.messages.create(to=PHONE, from_=FROM, body=f"more {i}")
    assert len(list(client.messages.stream(to=PHONE, page_size=2))) == 4  # paged through next_page_uri
    with pytest.raises(TwilioRestException) as bad_number:
        client.messages.create(to="12345", from_=FROM, body="x")
    assert bad_number.value.code == 21211
    wrong_token = Client(fake_twilio.account_sid, "wrong", http_client=make_http_client(fake_twilio.url, 2))
    with pytest.raises(TwilioRestException) as unauthorized:
        wrong_token.messages.create(to=PHONE, from_=FROM, body="x")
    assert unauthorized.value.status == 401
    url, params, signature = fake_twilio.status_callback(created.sid, "delivered")
    assert RequestValidator(fake_twilio.auth_token).validate(url, params, signature)
    assert params["MessageStatus"] == "delivered"
