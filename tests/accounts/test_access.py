"""Who may ask what: every API route needs a key of the account that owns the request; a
request of another account is answered exactly as one that does not exist."""

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Account, ApiKey
from processing import intake
from processing.models import ProcessingRequest

pytestmark = pytest.mark.django_db

HEADER = "S. No.,Product Name,Input Image Urls\n"
SEND_A_KEY = "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
NO_KEY = {"error": f"Authentication required: {SEND_A_KEY}", "code": "not_authenticated"}
KEY_REFUSED = {
    "error": "The API key is not valid: unknown, revoked or expired.",
    "code": "not_authenticated",
}


def stored_request(account: Account) -> ProcessingRequest:
    return intake.request_create(
        account=account,
        csv_data=(HEADER + "1,Lamp,https://shop.example/a.jpg\n").encode(),
        public_base_url="http://testserver",
    )


def request_routes() -> Iterator[tuple[str, str]]:
    """(name, pattern) of every route of the URLconf that takes a request id."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif (
                isinstance(pattern, URLPattern) and "request_id" in pattern.pattern.regex.groupindex
            ):
                yield pattern.name or "", prefix + str(pattern.pattern)

    yield from walk(get_resolver().url_patterns, "")


def test_there_are_request_routes_to_walk() -> None:
    names = {name for name, _ in request_routes()}
    assert {"request-status", "request-products", "request-webhook", "request-output-csv"} <= names
    assert {"request", "request-page", "request-delete"} <= names


@pytest.mark.parametrize(("name", "pattern"), list(request_routes()))
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_another_accounts_request_is_not_found_on_every_route(
    name: str, pattern: str, method: str, account: Account
) -> None:
    # Given a request of another account, and a person and a key of this one
    theirs = stored_request(services.account_get_or_create(name="someone-else")[0])
    user = services.user_create(account=account, username="us", password=None)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=account)[1]}")
    client.force_login(user)

    # When either asks for it on this route, and for an id that does not exist
    def ask(request_id: uuid.UUID) -> Any:
        return getattr(client, method)(reverse(name, kwargs={"request_id": request_id}))

    answer, unknown = ask(theirs.pk), ask(uuid.uuid4())

    # Then the answer is the one an unknown id gets: 404 (or 405 where the route has no
    # such method), with nothing of theirs in it
    assert answer.status_code in {404, 405}
    assert answer.status_code == unknown.status_code
    assert answer["Content-Type"] == unknown["Content-Type"]
    if answer["Content-Type"].startswith("application/json"):
        assert answer.json() == unknown.json()
    else:  # a page: the same template, which shows the id that was asked for
        assert [t.name for t in answer.templates] == [t.name for t in unknown.templates]
    assert b"Lamp" not in answer.content


UNKNOWN = "AbCdEfGh.0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("headers", "why", "told"),
    [
        ({}, "none", NO_KEY),
        ({"HTTP_AUTHORIZATION": "Bearer"}, "empty", NO_KEY),
        (
            {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
            "another scheme",
            {
                "error": "Authentication required: the Authorization header's scheme is "
                f"Basic; {SEND_A_KEY}",
                "code": "not_authenticated",
            },
        ),
        (
            {"HTTP_AUTHORIZATION": UNKNOWN},
            "no scheme: the key is never said back",
            {
                "error": "Authentication required: the Authorization header's scheme is "
                f"not Bearer; {SEND_A_KEY}",
                "code": "not_authenticated",
            },
        ),
        ({"HTTP_AUTHORIZATION": "Bearer not-a-key"}, "malformed", KEY_REFUSED),
        ({"HTTP_AUTHORIZATION": f"Bearer {UNKNOWN}"}, "unknown", KEY_REFUSED),
        ({"HTTP_X_API_KEY": UNKNOWN}, "unknown, X-API-Key", KEY_REFUSED),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/upload/"),
        ("get", f"/api/status/{uuid.uuid4()}/"),
        ("get", f"/api/requests/{uuid.uuid4()}/products/"),
        ("get", f"/api/requests/{uuid.uuid4()}/webhook/"),
        ("post", f"/api/requests/{uuid.uuid4()}/webhook/"),
        ("get", f"/api/requests/{uuid.uuid4()}/output.csv"),
        ("delete", f"/api/requests/{uuid.uuid4()}/"),
        ("post", "/api/webhook-test/"),
    ],
)
def test_every_api_route_needs_a_valid_key(
    method: str, path: str, headers: dict[str, str], why: str, told: dict[str, str]
) -> None:
    response = getattr(Client(), method)(path, **headers)
    assert response.status_code == 401, why
    assert response.json() == told
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_key_is_refused_and_a_live_one_of_either_header_is_taken(
    account: Account, api_key: str
) -> None:
    # Given a stored request of the account
    request = stored_request(account)
    status_path = f"/api/status/{request.pk}/"

    # Then its key works as a bearer token and as X-API-Key, and is noted as used
    assert Client(HTTP_AUTHORIZATION=f"Bearer {api_key}").get(status_path).status_code == 200
    assert Client(HTTP_X_API_KEY=api_key).get(status_path).status_code == 200
    stored = ApiKey.objects.get(prefix=api_key.split(".")[0])
    assert stored.last_used_at is not None
    assert api_key not in stored.hashed_key  # only its hash is kept

    # When it is revoked, then it is refused like any unknown key
    services.api_key_revoke(prefix=stored.prefix)
    refused = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}").get(status_path)
    assert refused.status_code == 401
    assert refused.json() == KEY_REFUSED


@pytest.mark.parametrize("path", ["/healthz", "/api/schema/", "/api/docs/"])
def test_health_schema_and_docs_need_no_key(path: str) -> None:
    assert Client().get(path).status_code == 200


def test_the_schema_declares_the_bearer_scheme_on_every_operation() -> None:
    schema = json.loads(Client().get("/api/schema/", HTTP_ACCEPT="application/json").content)
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"ApiKey": []} in operation["security"], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_metrics_answer_only_the_token_when_one_is_set(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Without a token, anyone (a private network's scraper)
    assert Client().get("/metrics").status_code == 200
    # With one, only a bearer of it
    settings.METRICS_TOKEN = "scrape-me"
    with caplog.at_level(logging.INFO):
        refused = Client().get("/metrics")
    # each refusal logged at DEBUG, as a probe's answer is, not a WARNING per scrape
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == "Bearer"
    assert refused.json() == {"error": "Authentication required.", "code": "not_authenticated"}
    assert Client(HTTP_AUTHORIZATION="Bearer wrong").get("/metrics").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer scrape-me").get("/metrics").status_code == 200


def test_a_logged_in_post_needs_the_csrf_token_and_a_key_post_does_not(
    member_client: Client, api: APIClient
) -> None:
    # A cross-site POST riding on a person's session is refused
    forged = member_client.post("/api/upload/", {})
    assert forged.status_code == 403
    assert forged.json()["code"] == "permission_denied"
    assert "CSRF" in forged.json()["error"]
    # The page's own POST, with the token from its form, goes through (to the form's check)
    page = member_client.get("/")
    token = page.context["csrf_token"]
    own = member_client.post("/api/upload/", {}, HTTP_X_CSRFTOKEN=str(token))
    assert own.status_code == 400
    assert own.json()["code"] == "no_file"
    # An API key's POST needs no token
    assert api.post("/api/upload/", {}).json()["code"] == "no_file"


@pytest.mark.parametrize("login_path", ["/login/", "/admin/login/"])
def test_wrong_passwords_are_counted_for_the_name_authentication_uses(login_path: str) -> None:
    """Counted as typed, "otto " and otto in full-width letters each had ten fresh tries
    at otto's password; the admin's login page counted none at all."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache

    cache.clear()
    get_user_model().objects.create_superuser("otto", "otto@example.com", "the-right-one-42")
    client = Client()
    spellings = ["otto", "otto ", " OTTO", "\uff4f\uff54\uff54\uff4f"]  # the last full-width
    for attempt in range(10):
        wrong = client.post(
            login_path, {"username": spellings[attempt % 4], "password": f"wrong-{attempt}"}
        )
        assert wrong.status_code == 200  # the form again, refused

    # Then every spelling of the name is paused, the right password too
    for spelling in spellings:
        refused = client.post(login_path, {"username": spelling, "password": "the-right-one-42"})
        assert refused.status_code == 200, spelling
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("login_path", ["/login/", "/admin/login/"])
def test_a_paused_login_says_so_and_until_when(
    login_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answered the right password, in the pause, as a wrong one ("Please enter a
    correct username and password"), with no word of the pause, its end or login links."""
    import time

    from django.contrib.auth import get_user_model
    from django.core.cache import cache

    # Given ten wrong passwords for otto from one address
    cache.clear()
    get_user_model().objects.create_superuser("otto", "otto@example.com", "the-right-one-42")
    client = Client()
    for attempt in range(10):
        client.post(login_path, {"username": "otto", "password": f"wrong-{attempt}"})
    started = time.time()

    def log_in(username: str, seconds_later: float) -> str:
        monkeypatch.setattr(time, "time", lambda: started + seconds_later)
        answer = client.post(login_path, {"username": username, "password": "the-right-one-42"})
        assert "_auth_user_id" not in client.session
        return " ".join(answer.content.decode().split())

    # When otto sends the right one, then the page says why it is refused, and until when
    told = log_in("otto", 0)
    assert "correct username and password" not in told
    assert (
        "Too many wrong passwords were sent for this user name from your address: try again "
        "in about 15 minutes, or log in with a one-time link (whoever runs the service makes "
        "one with python manage.py login-link USERNAME)."
    ) in told
    assert "in about 6 minutes" in log_in("otto", 9 * 60 + 30)
    assert "in about 1 minute," in log_in("OTTO ", 14 * 60 + 30)

    # and once the pause is over, the right password logs in
    monkeypatch.setattr(time, "time", lambda: started + 15 * 60 + 1)
    client.post(login_path, {"username": "otto", "password": "the-right-one-42"})
    assert "_auth_user_id" in client.session


@pytest.mark.parametrize(
    ("proxy", "forwarded_allow_ips"), [("127.0.0.1", ["127.0.0.1", "::1"]), ("10.0.0.5", ["*"])]
)
def test_wrong_passwords_behind_a_proxy_pause_the_client_that_typed_them_not_everyone(
    settings: Any, proxy: str, forwarded_allow_ips: list[str]
) -> None:
    """Counted per REMOTE_ADDR, which behind a proxy is the proxy's: anyone's ten wrong
    tries at a name paused every login to it, its owner's too, for 15 minutes."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache

    # Given a proxy in front that appends the address it saw to X-Forwarded-For
    cache.clear()
    settings.FORWARDED_ALLOW_IPS = forwarded_allow_ips
    get_user_model().objects.create_user("otto", "otto@example.com", "the-right-one-42")

    def log_in(client_seen: str, password: str, claimed: str = "") -> Client:
        client = Client(REMOTE_ADDR=proxy)
        forwarded = f"{claimed}, {client_seen}" if claimed else client_seen
        client.post(
            "/login/", {"username": "otto", "password": password}, HTTP_X_FORWARDED_FOR=forwarded
        )
        return client

    # When a stranger makes ten wrong tries at otto's password, each claiming another address
    for attempt in range(10):
        log_in("203.0.113.9", f"wrong-{attempt}", claimed=f"192.0.2.{attempt}")

    # Then the stranger is paused, right password or not, whatever it claims
    stranger = log_in("203.0.113.9", "the-right-one-42", claimed="198.51.100.7")
    assert "_auth_user_id" not in stranger.session
    # while otto, through the same proxy, logs in
    assert "_auth_user_id" in log_in("198.51.100.7", "the-right-one-42").session


def test_a_client_that_is_no_trusted_proxy_is_known_by_its_own_address(settings: Any) -> None:
    # Given a client that reaches the service directly, writing X-Forwarded-For itself
    from django.test import RequestFactory

    from config.proxies import client_address

    settings.FORWARDED_ALLOW_IPS = ["10.0.0.0/8"]
    request = RequestFactory().get(
        "/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.0.0.1, 198.51.100.7"
    )
    # Then what it wrote is not believed; through two trusted proxies, the first's is
    assert client_address(request) == "203.0.113.9"
    through_two = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7, 10.0.0.9"
    )
    assert client_address(through_two) == "198.51.100.7"
    # and a load balancer that writes the client's port too names the same client
    for with_port, address in [
        ("203.0.113.9:51234", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
    ]:
        request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=with_port)
        assert client_address(request) == address


def test_answers_about_an_account_are_kept_out_of_caches_and_static_files_are_not(
    member_client: Client, api: APIClient, account: Account
) -> None:
    """They carried no Cache-Control: a browser's back button showed a catalogue after
    logout, and a proxy between could keep it."""
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    for answer in (
        member_client.get("/"),
        member_client.get(f"/requests/{request.pk}/"),
        api.get(f"/api/status/{request.pk}/"),
        api.get(f"/api/requests/{request.pk}/products/"),
        api.get("/api/requests/"),
    ):
        assert answer["Cache-Control"] == "private, no-store", answer.request["PATH_INFO"]
    # while the page's script, the same for everyone, is cached as whitenoise says
    script = member_client.get("/static/processing/request.js")
    assert script.status_code == 200
    assert "no-store" not in script["Cache-Control"]
