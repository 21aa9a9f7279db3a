"""The account page: a person of the account makes and revokes its API keys and rotates its
webhook secret, through Django's test client with CSRF checks on, and the API answers
each key as the page left it."""

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Account, ApiKey
from config.middleware import PAGE_CONTENT_POLICY
from processing import intake
from processing.models import ProcessingRequest
from tests.support import free_port

pytestmark = pytest.mark.django_db


def form_post(client: Client, path: str, data: dict[str, str] | None = None) -> Any:
    """A POST as the account page's forms send it: with the CSRF token and the key form's
    own token of the page just read."""
    page = client.get("/account/").context
    tokens = {"csrfmiddlewaretoken": str(page["csrf_token"]), "form_token": page["form_token"]}
    return client.post(path, {**tokens, **(data or {})})


def text(answer: Any) -> str:
    """A page's HTML with its line breaks and indents as single spaces, as a reader sees it."""
    return " ".join(answer.content.decode().split())


def api_answers(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return int(client.get("/api/requests/").status_code)


def test_a_member_makes_a_key_that_is_shown_once_and_that_the_api_takes(
    member_client: Client, account: Account
) -> None:
    # Given the account page
    page = member_client.get("/account/")
    assert page.status_code == 200
    assert "No keys yet." in text(page)
    # When a person makes a key with a label
    made = form_post(member_client, "/account/keys/", {"label": "  nightly feed  "})
    # Then the answer shows the key, which the API takes for this account
    assert made.status_code == 200
    key = made.context["new_key"]
    assert key in text(made)
    assert api_answers(key) == 200
    # And the page lists it by prefix and trimmed label, never the key again
    listed = member_client.get("/account/")
    shown = text(listed)
    assert key not in shown
    api_key = ApiKey.objects.get(account=account)
    assert api_key.name == "nightly feed"
    assert f"<code>{api_key.prefix}…</code>" in shown
    assert "1 of at most 25 keys in use." in shown


def test_a_new_key_comes_with_a_copy_button_and_is_selected_whole(
    member_client: Client, account: Account
) -> None:
    """There was no Copy button, and a double-click selected only the part after the
    key's dot: not a key."""
    made = form_post(member_client, "/account/keys/", {"label": "feed"})

    key = made.context["new_key"]
    shown = text(made)
    assert f'<code id="new-key" class="secret">{key}</code>' in shown
    # shown by its script, which alone makes it work
    assert '<button type="button" data-copy="new-key" hidden>Copy</button>' in shown
    assert '<script src="/static/processing/copy.js" defer></script>' in shown
    # And the page without a new key has no button
    assert "data-copy=" not in text(member_client.get("/account/"))


def test_a_key_revoked_from_the_page_is_refused_by_the_api_after_a_confirmation(
    member_client: Client, api_key: str, account: Account
) -> None:
    prefix = api_key.partition(".")[0]
    # Asking to revoke shows what will happen and revokes nothing
    asked = member_client.get(f"/account/keys/{prefix}/revoke/")
    assert asked.status_code == 200
    assert "within 10 seconds" in text(asked)
    assert api_answers(api_key) == 200
    # The confirmation's POST revokes it: the API refuses it and the page says so
    revoked = form_post(member_client, f"/account/keys/{prefix}/revoke/")
    assert revoked.status_code == 302
    assert revoked["Location"] == "/account/"
    assert api_answers(api_key) == 401
    assert ApiKey.objects.get(prefix=prefix).revoked
    shown = text(member_client.get("/account/"))
    assert f'<p class="message" role="status">Key {prefix}… revoked: every script' in shown
    row = re.search(rf"<code>{prefix}…</code>.*?</tr>", shown, re.S)
    assert row is not None
    assert "revoked" in row.group(0)
    assert "Revoke…" not in row.group(0)
    # And a second revoke finds no key in use
    assert member_client.get(f"/account/keys/{prefix}/revoke/").status_code == 404


def test_another_accounts_key_cannot_be_revoked_or_seen_from_this_account(
    member_client: Client,
) -> None:
    other, _ = services.account_get_or_create(name="other-shop")
    other_key, key = services.api_key_create(account=other, label="theirs")
    # Neither listed nor revocable: 404, as a key that does not exist
    assert other_key.prefix not in text(member_client.get("/account/"))
    assert member_client.get(f"/account/keys/{other_key.prefix}/revoke/").status_code == 404
    assert form_post(member_client, f"/account/keys/{other_key.prefix}/revoke/").status_code == 404
    assert api_answers(key) == 200


def test_the_pages_changes_need_the_pages_csrf_token(member_client: Client, api_key: str) -> None:
    prefix = api_key.partition(".")[0]
    # A cross-site form riding on the session changes nothing, and the page says what to do
    forged = member_client.post("/account/keys/", {"label": "forged"})
    assert forged.status_code == 403
    assert "Go back, reload the page, and send the form again." in text(forged)
    assert forged["Content-Security-Policy"] == PAGE_CONTENT_POLICY
    assert member_client.post(f"/account/keys/{prefix}/revoke/").status_code == 403
    assert member_client.post("/account/webhook-secret/rotate/").status_code == 403
    assert ApiKey.objects.filter(name="forged").count() == 0
    assert api_answers(api_key) == 200


def test_an_api_key_cannot_open_the_account_page_or_make_keys(api_key: str) -> None:
    # A leaked key must not make itself a successor: the page wants a person's login
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert client.get("/account/").status_code == 302
    assert client.post("/account/keys/", {"label": "successor"}).status_code in {302, 403}
    assert ApiKey.objects.filter(name="successor").count() == 0


def test_a_long_label_and_a_key_past_the_limit_are_refused_saying_why(
    member_client: Client, account: Account
) -> None:
    too_long = form_post(member_client, "/account/keys/", {"label": "x" * 51})
    assert too_long.status_code == 400
    assert "at most 50 characters; this one has 51" in text(too_long)
    # Keys revoked or expired do not count towards the limit; keys in use do
    for _ in range(services.ACTIVE_KEYS_LIMIT - 1):
        services.api_key_create(account=account)
    services.api_key_revoke(prefix=services.api_key_create(account=account)[0].prefix)
    expired, _ = services.api_key_create(account=account)
    ApiKey.objects.filter(pk=expired.pk).update(expiry_date=timezone.now())
    assert form_post(member_client, "/account/keys/").status_code == 200
    refused = form_post(member_client, "/account/keys/")
    assert refused.status_code == 400
    assert "already has 25 keys in use" in text(refused)
    assert ApiKey.objects.filter(account=account).count() == services.ACTIVE_KEYS_LIMIT + 2


def test_a_rotated_secret_is_shown_and_the_previous_one_signs_until_the_overlap_ends(
    member_client: Client, account: Account
) -> None:
    before = account.webhook_secret
    assert before in text(member_client.get("/account/"))
    # Asking shows what rotating does and rotates nothing
    asked = member_client.get("/account/webhook-secret/rotate/")
    assert "For 24 hours every webhook carries two signatures" in text(asked)
    account.refresh_from_db()
    assert account.webhook_secret == before
    # The POST rotates: the page shows the new secret, and both sign for the overlap
    confirmed = {"replacing": asked.context["fingerprint"]}
    assert form_post(member_client, "/account/webhook-secret/rotate/", confirmed).status_code == 302
    account.refresh_from_db()
    assert account.webhook_secret != before
    assert account.signing_secrets(timezone.now()) == [account.webhook_secret, before]
    shown = text(member_client.get("/account/"))
    assert account.webhook_secret in shown
    assert before not in shown
    assert "The previous secret signs too until" in shown


def test_a_user_of_no_account_is_told_so() -> None:
    loner = Client()
    loner.force_login(get_user_model().objects.create_user(username="loner"))
    answer = loner.get("/account/")
    assert answer.status_code == 403
    assert "belongs to no account" in text(answer)


@pytest.mark.parametrize(
    ("path", "logged_in"),
    [("/login/", False), ("/login/link/unknown/", False), ("/account/", True), ("/nowhere/", True)],
)
def test_every_page_is_under_the_sites_content_policy(
    member_client: Client, path: str, logged_in: bool
) -> None:
    # The login, link and not-found pages had none: only the request pages set it
    answer = (member_client if logged_in else Client()).get(path, HTTP_ACCEPT="text/html")
    assert answer["Content-Type"].startswith("text/html")
    assert answer["Content-Security-Policy"] == PAGE_CONTENT_POLICY
    assert answer["Referrer-Policy"] == "same-origin"


def test_the_api_docs_keep_their_inline_start_without_the_policy(client: Client) -> None:
    answer = client.get("/api/docs/")
    assert answer.status_code == 200
    assert not answer.has_header("Content-Security-Policy")


def test_a_confirmation_sent_twice_rotates_once_and_keeps_the_secret_receivers_have(
    member_client: Client, account: Account
) -> None:
    """The second rotation made the first's new secret, never seen, the previous one:
    the secret receivers had stopped signing at once."""
    before = account.webhook_secret
    asked = member_client.get("/account/webhook-secret/rotate/")
    form = {"csrfmiddlewaretoken": str(asked.context["csrf_token"])}
    form["replacing"] = asked.context["fingerprint"]
    assert member_client.post("/account/webhook-secret/rotate/", form).status_code == 302
    again = member_client.post("/account/webhook-secret/rotate/", form)
    assert again.status_code == 409
    assert "The secret was rotated already" in text(again)
    account.refresh_from_db()
    assert account.signing_secrets(timezone.now()) == [account.webhook_secret, before]


def test_a_key_form_sent_again_makes_no_second_key(member_client: Client, account: Account) -> None:
    page = member_client.get("/account/").context
    form = {"csrfmiddlewaretoken": str(page["csrf_token"]), "form_token": page["form_token"]}
    assert member_client.post("/account/keys/", {**form, "label": "feed"}).status_code == 200
    # A reload of the answer, or Back and send, posts the same form again
    again = member_client.post("/account/keys/", {**form, "label": "feed"})
    assert again.status_code == 409
    assert "This form was sent already" in text(again)
    assert ApiKey.objects.filter(account=account).count() == 1
    # A form without the page's token makes none either
    del form["form_token"]
    assert member_client.post("/account/keys/", form).status_code == 409
    assert ApiKey.objects.filter(account=account).count() == 1


def test_logins_and_keys_are_made_while_the_cache_is_away(
    settings: Any, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    """The login pauses and the key form's tokens live in Redis (CACHE_URL): while it was
    away, every login, right or wrong, and every key made from the page answered 500."""
    # Given a cache at an address where nothing answers (a Redis stopped)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    services.user_create(account=account, username="ann", password="the-right-one-42")
    client = Client(enforce_csrf_checks=True)
    token = str(client.get("/login/").context["csrf_token"])
    login = {"csrfmiddlewaretoken": token, "username": "ann"}
    # When a person types a wrong password, then the right one
    wrong = client.post("/login/", {**login, "password": "wrong"})
    right = client.post("/login/", {**login, "password": "the-right-one-42"})
    # Then the first is refused as any wrong password is, and the second logs in
    assert wrong.status_code == 200
    assert "Please enter a correct username and password" in text(wrong)
    assert right.status_code == 302
    # And a key is made from the account page
    made = form_post(client, "/account/keys/", {"label": "outage"})
    assert made.status_code == 200
    assert api_answers(made.context["new_key"]) == 200
    # With the cache's absence logged
    assert "login failures cannot be counted" in caplog.text
    assert "key forms sent again cannot be told" in caplog.text


def test_a_key_form_refused_may_be_sent_again_and_is_not_told_it_made_a_key(
    member_client: Client, account: Account
) -> None:
    page = member_client.get("/account/").context
    form = {"csrfmiddlewaretoken": str(page["csrf_token"]), "form_token": page["form_token"]}
    assert member_client.post("/account/keys/", {**form, "label": "x" * 51}).status_code == 400
    # A reload of the refusal, the label mended: the key is made, not "sent already"
    made = member_client.post("/account/keys/", {**form, "label": "feed"})
    assert made.status_code == 200, text(made)
    assert ApiKey.objects.filter(account=account).count() == 1


@pytest.mark.parametrize(
    ("label", "refusal"),
    [
        ("a\x00b", "no control or invisible characters"),
        ("\u200b\u200b", "no control or invisible characters"),
        ("e\u0301" * 50 + "x", "at most 50 characters; this one has 51"),
    ],
)
def test_labels_are_plain_text_counted_as_shown(
    member_client: Client, account: Account, label: str, refusal: str
) -> None:
    # A NUL was a 500 on PostgreSQL; é typed as e and an accent counted twice
    refused = form_post(member_client, "/account/keys/", {"label": label})
    assert refused.status_code == 400
    assert refusal in text(refused)
    assert not ApiKey.objects.filter(account=account).exists()
    # What was typed is kept in the field, to mend
    assert refused.context["label"] == label
    accented = form_post(member_client, "/account/keys/", {"label": "e\u0301" * 50})
    assert accented.status_code == 200
    assert ApiKey.objects.get(account=account).name == "\u00e9" * 50


@pytest.mark.parametrize("prefix", ["%00", "a%00bcdefg", "x" * 9, "%3Cb%3Ehi%3C"])
def test_a_revoke_link_that_names_no_prefix_is_not_found_and_says_nothing_of_it(
    member_client: Client, prefix: str
) -> None:
    answer = member_client.get(f"/account/keys/{prefix}/revoke/")
    assert answer.status_code == 404
    assert "No such key in use" in text(answer)


def test_the_make_a_key_route_sends_a_get_to_the_account_page_and_head_is_answered(
    member_client: Client,
) -> None:
    # Where the login page sends back a person whose session ended as they pressed the button
    assert member_client.get("/account/keys/")["Location"] == "/account/"
    assert member_client.head("/account/").status_code == 200
    assert member_client.head("/").status_code == 200


@pytest.mark.parametrize(
    ("overlap", "words"),
    [
        (86400, "For 24 hours every webhook carries two signatures"),
        (90, "For 1.5 minutes every webhook carries two signatures"),
        (1, "For 1 second every webhook carries two signatures"),
        (0, "keeps no overlap"),
    ],
)
def test_the_rotation_says_how_long_both_secrets_sign_in_words(
    member_client: Client, settings: Any, overlap: float, words: str
) -> None:
    settings.WEBHOOK_SECRET_OVERLAP = overlap
    assert words in text(member_client.get("/account/webhook-secret/rotate/"))


def test_a_head_request_changes_nothing_on_any_page_that_changes_something(
    member_client: Client, api_key: str, account: Account, origin: Any
) -> None:
    """HEAD is answered as GET, without a CSRF check: it revoked the key, rotated the
    secret and deleted the request it named."""
    prefix = api_key.partition(".")[0]
    secret = account.webhook_secret
    finished = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    ProcessingRequest.objects.filter(pk=finished.pk).update(status="completed")
    for path in [
        "/account/keys/",
        f"/account/keys/{prefix}/revoke/",
        "/account/webhook-secret/rotate/",
        "/account/webhook-test/",
        f"/requests/{finished.pk}/delete/",
    ]:
        assert member_client.head(path).status_code in {200, 302}, path
    assert api_answers(api_key) == 200
    account.refresh_from_db()
    assert account.webhook_secret == secret
    assert ApiKey.objects.filter(account=account).count() == 1
    finished.refresh_from_db()
    assert finished.expired_at is None


def test_the_pages_test_event_form_refuses_a_url_given_twice(member_client: Client) -> None:
    token = str(member_client.get("/account/").context["csrf_token"])
    twice = member_client.post(
        "/account/webhook-test/",
        {"url": ["https://a.example/", "https://b.example/"], "csrfmiddlewaretoken": token},
    )
    assert twice.status_code == 400
    assert "Given 2 times; give it once." in twice.context["test_error"]


def test_logout_typed_in_the_address_bar_shows_its_button_and_only_its_post_logs_out(
    member_client: Client,
) -> None:
    """GET /logout/ was a blank 405."""
    # When a person opens /logout/
    asked = member_client.get("/logout/")

    # Then a page asks, with the button, and they are still logged in
    assert asked.status_code == 200
    assert '<h1 id="logout-heading">Log out?</h1>' in text(asked)
    assert member_client.get("/").status_code == 200
    # And its button logs them out
    token = str(asked.context["csrf_token"])
    left = member_client.post("/logout/", {"csrfmiddlewaretoken": token})
    assert left.status_code == 302
    assert member_client.get("/").status_code == 302
