"""The operators' commands, as a script would call them: the key, secret or link alone on
the last line of standard output."""

import base64
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import Account, ApiKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def works(key: str) -> bool:
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/upload/").status_code != 401


def test_apikey_create_makes_the_account_and_prints_the_key_alone_last() -> None:
    lines = run("apikey", "create", "--account", "acme", "--label", "nightly feed")
    key = lines[-1]
    prefix, _, secret = key.partition(".")
    assert len(prefix) == 8
    assert len(secret) == 32
    assert Account.objects.filter(name="acme").exists()
    assert works(key)
    # a second key for the same account, with the account not made again
    again = run("apikey", "create", "--account", "acme")
    assert "made" not in " ".join(again[:-1]).replace("made for", "")
    assert again[-1] != key


def test_apikey_list_shows_prefixes_and_revoke_ends_a_key_for_good() -> None:
    key = run("apikey", "create", "--account", "acme", "--label", "feed")[-1]
    other = run("apikey", "create", "--account", "globex")[-1]
    prefix = key.split(".")[0]

    listed = run("apikey", "list", "--account", "acme")
    assert any(line.startswith(prefix) and "feed" in line for line in listed)
    assert not any(line.startswith(other.split(".")[0]) for line in listed)
    assert key not in "\n".join(run("apikey", "list"))  # never the key itself

    run("apikey", "revoke", prefix)
    assert not works(key)
    assert works(other)
    assert any(line.startswith(prefix) and "revoked" in line for line in run("apikey", "list"))
    with pytest.raises(CommandError, match="no API key with the prefix 'nothing'"):
        call_command("apikey", "revoke", "nothing")


def test_apikey_list_of_an_account_that_does_not_exist_says_so() -> None:
    """It printed an empty table and succeeded: a misspelt name looked like an account
    without keys, while `account secret` refused the same name."""
    run("apikey", "create", "--account", "acme")
    with pytest.raises(CommandError) as refused:
        call_command("apikey", "list", "--account", "acmee")
    assert str(refused.value) == "There is no account named 'acmee'."
    run("account", "create", "empty")
    assert len(run("apikey", "list", "--account", "empty")) == 1  # the heading alone


def test_apikey_list_marks_a_key_past_its_expiry() -> None:
    key = run("apikey", "create", "--account", "acme")[-1]
    prefix = key.split(".")[0]
    ApiKey.objects.filter(prefix=prefix).update(expiry_date=timezone.now() - timedelta(days=1))

    assert not works(key)
    assert any(
        line.startswith(prefix) and line.endswith(" expired") for line in run("apikey", "list")
    )


def test_apikey_create_gives_a_key_an_expiry_when_asked() -> None:
    """The README spoke of expired keys, and no command could make one."""
    lines = run("apikey", "create", "--account", "acme", "--expires-in-days", "30")
    api_key = ApiKey.objects.get(prefix=lines[-1].split(".")[0])
    assert api_key.expiry_date is not None
    later = timezone.now() + timedelta(days=30)
    assert abs(api_key.expiry_date - later) < timedelta(minutes=1)
    assert f"until {api_key.expiry_date:%Y-%m-%d %H:%M} UTC;" in lines[-2]
    assert works(lines[-1])
    without = run("apikey", "create", "--account", "acme")[-1]
    assert ApiKey.objects.get(prefix=without.split(".")[0]).expiry_date is None


@pytest.mark.parametrize("days", ["0", "-1", "soon"])
def test_an_expiry_that_is_not_a_number_of_days_to_come_is_refused(days: str) -> None:
    with pytest.raises(CommandError, match="a whole number of days, 1 or more"):
        call_command("apikey", "create", "--account", "acme", "--expires-in-days", days)
    assert not ApiKey.objects.exists()


def test_an_account_name_is_checked() -> None:
    with pytest.raises(CommandError, match="An account name is"):
        call_command("apikey", "create", "--account", "no spaces please")


def test_a_label_longer_than_its_column_is_refused_saying_so() -> None:
    # It reached the database before: PostgreSQL's error, or SQLite's silence
    with pytest.raises(CommandError, match="at most 50 characters; this one has 51"):
        call_command("apikey", "create", "--account", "acme", "--label", "x" * 51)
    assert not ApiKey.objects.exists()


def test_account_secret_prints_it_and_rotate_keeps_the_old_one_for_the_overlap(
    settings: Any,
) -> None:
    settings.WEBHOOK_SECRET_OVERLAP = 3600
    run("account", "create", "acme")
    old = run("account", "secret", "acme")[-1]
    assert old.startswith("whsec_")
    assert len(base64.b64decode(old.removeprefix("whsec_"))) == 32

    new = run("account", "rotate-secret", "acme")[-1]

    assert new.startswith("whsec_")
    assert new != old
    assert run("account", "secret", "acme")[-1] == new
    account = Account.objects.get(name="acme")
    now = timezone.now()
    assert account.signing_secrets(now) == [new, old]
    assert account.signing_secrets(now + timedelta(seconds=3601)) == [new]


def test_a_second_rotation_within_the_overlap_is_refused_unless_forced(settings: Any) -> None:
    """It ended the original secret at once, while it printed "both secrets for 24 hours":
    receivers still holding it refused every event."""
    settings.WEBHOOK_SECRET_OVERLAP = 3600
    run("account", "create", "acme")
    original = run("account", "secret", "acme")[-1]
    first = run("account", "rotate-secret", "acme")[-1]
    until = Account.objects.get(name="acme").previous_secret_expires_at
    assert until is not None

    with pytest.raises(CommandError) as refused:
        call_command("account", "rotate-secret", "acme")

    assert str(refused.value) == (
        "The secret of acme was rotated already: its previous secret signs too until "
        f"{until:%Y-%m-%d %H:%M:%S} UTC, and receivers may still hold it. Rotating now would "
        "end it at once. Wait until then, or give --force."
    )
    account = Account.objects.get(name="acme")
    assert account.signing_secrets(timezone.now()) == [first, original]

    forced = run("account", "rotate-secret", "acme", "--force")[-1]
    account.refresh_from_db()
    assert account.signing_secrets(timezone.now()) == [forced, first]

    # Once the overlap is over, a rotation needs no --force
    Account.objects.filter(name="acme").update(previous_secret_expires_at=timezone.now())
    assert run("account", "rotate-secret", "acme")[-1].startswith("whsec_")


def test_user_create_and_a_login_link_that_works_once() -> None:
    made = run(
        "user", "create", "--account", "acme", "--username", "ann", "--password", "a-long-pw-9"
    )
    assert made == ["Account acme made.", "User ann of account acme made."]
    user = get_user_model().objects.get(username="ann")
    assert user.membership.account.name == "acme"
    assert user.check_password("a-long-pw-9")

    url = run("login-link", "ann", "--base-url", "http://testserver")[-1]
    path = url.removeprefix("http://testserver")
    browser = Client(enforce_csrf_checks=True)
    assert browser.get("/").status_code == 302  # not logged in: sent to log in
    logged_in = log_in_by_link(browser, path)
    assert logged_in.status_code == 302
    assert logged_in["Location"] == "/"
    assert browser.get("/").status_code == 200
    assert Client().get(path).status_code == 410  # a second use
    assert Client().post(path).status_code == 410
    # The link opened again by the person it logged in: they are pointed on, not stuck
    again = browser.get(path)
    assert again.status_code == 410
    assert "You are logged in already, as ann" in again.content.decode()


@pytest.mark.parametrize("base_url", ["notaurl", "images.example.com", "ftp://h", "http:///x"])
def test_a_login_link_under_a_base_url_that_is_not_http_is_refused(base_url: str) -> None:
    """It printed "notaurl/login/link/…", a link that opened nothing, and used a token."""
    account, _ = services.account_get_or_create(name="acme")
    user = services.user_create(account=account, username="dee", password=None)

    with pytest.raises(CommandError) as refused:
        call_command("login-link", "dee", "--base-url", base_url)

    assert str(refused.value) == (
        "--base-url must be the service's absolute http(s) address "
        f"(https://images.example.com), not {base_url!r}."
    )
    assert not user.loginlink_set.exists()


def test_opening_a_login_link_logs_in_only_by_the_button_on_its_page() -> None:
    """Logging in on the GET let any page that loaded the link log its visitor into the
    link's account (login CSRF), and a mail scanner fetching it used it up."""
    account, _ = services.account_get_or_create(name="acme")
    user = services.user_create(account=account, username="dee", password=None)
    path = f"/login/link/{services.login_link_create(user=user)}/"

    scanner = Client()
    for _ in range(2):
        page = scanner.get(path)
        assert page.status_code == 200
        assert "Log in as dee" in page.content.decode()
    assert scanner.get("/").status_code == 302  # looking logged nobody in

    forged = Client(enforce_csrf_checks=True)
    assert forged.post(path).status_code == 403  # posted from another site: no CSRF token
    assert forged.get("/").status_code == 302

    person = Client(enforce_csrf_checks=True)
    assert log_in_by_link(person, path)["Location"] == "/"
    assert person.get("/").status_code == 200


def log_in_by_link(browser: Client, path: str) -> Any:
    """Open a login link and press its button, as a person in a browser does."""
    page = browser.get(path)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    return browser.post(path, {"csrfmiddlewaretoken": token.group(1)})


def test_a_login_link_expires_after_fifteen_minutes() -> None:
    account, _ = services.account_get_or_create(name="acme")
    user = services.user_create(account=account, username="bob", password=None)
    token = services.login_link_create(user=user)
    user.loginlink_set.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(f"/login/link/{token}/").status_code == 410


def test_a_deactivated_user_gets_no_login_link_and_one_made_before_does_not_work() -> None:
    """Links were made, offered ("Log in as ina") and used up for a deactivated user, whose
    login then recorded last_login and landed on the login page with no word of why."""
    # Given ina, with a link made while she was active, then deactivated
    account, _ = services.account_get_or_create(name="acme")
    user = services.user_create(account=account, username="ina", password=None)
    path = f"/login/link/{services.login_link_create(user=user)}/"
    user.is_active = False
    user.save(update_fields=["is_active"])

    # When a link is asked for, then the command refuses, naming why, and makes none
    with pytest.raises(CommandError) as refused:
        call_command("login-link", "ina")
    assert str(refused.value) == (
        "User ina is deactivated, so a login link would not let them in: make them active "
        "again in the admin first."
    )
    assert user.loginlink_set.count() == 1

    # and the earlier link answers as unusable, on opening it and on pressing its button
    browser = Client()  # the button's POST as a page opened before would send it
    for answer in (browser.get(path), browser.post(path)):
        assert answer.status_code == 410
        assert "its user can no longer log in" in " ".join(answer.content.decode().split())
    assert browser.get("/").status_code == 302
    # without being used up, or the user's last login touched
    assert user.loginlink_set.get().used_at is None
    user.refresh_from_db()
    assert user.last_login is None


def test_without_a_terminal_the_password_is_read_from_standard_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It crashed there (getpass: EOFError and a traceback), in jobs and `exec -T`."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-pw-9\n"))
    run("user", "create", "--account", "acme", "--username", "ann")
    client = Client()
    assert client.login(username="ann", password="a-long-pw-9")

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="there is no terminal to ask at"):
        call_command("user", "create", "--account", "acme", "--username", "bo")
    assert not get_user_model().objects.filter(username="bo").exists()


def test_user_create_says_when_it_made_the_account_as_apikey_create_does() -> None:
    """It did not: a misspelt --account made a user of a new, empty account in silence."""
    run("account", "create", "acme")
    existing = run("user", "create", "--account", "acme", "--username", "ann", "--no-password")
    assert existing == ["User ann of account acme made."]

    misspelt = run("user", "create", "--account", "acme_", "--username", "bo", "--no-password")
    assert misspelt == ["Account acme_ made.", "User bo of account acme_ made."]


def test_user_join_puts_a_user_of_no_account_into_one_as_the_page_suggests() -> None:
    """The page of a user of no account suggested `user create` with their own name, which
    always failed ("There is already a user named 'op'"): no command could add them."""
    # Given op, a user of no account (made in the admin, or by createsuperuser)
    get_user_model().objects.create_user(username="op", password="a-long-pw-9")
    browser = Client()
    assert browser.login(username="op", password="a-long-pw-9")
    told = " ".join(browser.get("/account/").content.decode().split())
    suggested = "python manage.py user join --account NAME --username op"
    assert suggested in told

    # When the operator runs what the page suggests, for an account that exists
    with pytest.raises(CommandError, match="There is no account named 'acme'"):
        call_command(*suggested.replace("NAME", "acme").split()[2:])
    run("account", "create", "acme")
    joined = run(*suggested.replace("NAME", "acme").split()[2:])

    # Then op acts for it, and asking again changes nothing
    assert joined == ["User op joined account acme."]
    assert browser.get("/account/").status_code == 200
    assert run("user", "join", "--account", "acme", "--username", "op") == [
        "User op is in account acme already."
    ]
    # while a user of another account is not moved, and an unknown one is named
    run("account", "create", "globex")
    with pytest.raises(CommandError) as refused:
        call_command("user", "join", "--account", "globex", "--username", "op")
    assert str(refused.value) == (
        "User op belongs to account acme; a user acts for one account. Change it on the "
        "user's page in the admin if it should be globex."
    )
    assert get_user_model().objects.get(username="op").membership.account.name == "acme"
    with pytest.raises(CommandError, match="There is no user named 'nobody'"):
        call_command("user", "join", "--account", "acme", "--username", "nobody")


def test_a_weak_password_is_refused() -> None:
    with pytest.raises(CommandError):
        call_command("user", "create", "--account", "acme", "--username", "cy", "--password", "123")


def test_a_password_like_the_user_name_is_refused() -> None:
    """It was taken: the password was checked without the user, so Django's check of a
    password against the user's name never ran."""
    with pytest.raises(CommandError, match="The password is too similar to the username"):
        call_command(
            "user",
            "create",
            "--account",
            "acme",
            "--username",
            "margaretsmith",
            "--password",
            "margaretsmith1",
        )
    assert not get_user_model().objects.filter(username="margaretsmith").exists()
    assert not Account.objects.filter(name="acme").exists()


def test_local_setup_makes_account_user_and_key_once_and_a_link_each_time(
    settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    first = run("local_setup")
    key = (tmp_path / "api_key").read_text().strip()
    assert oct((tmp_path / "api_key").stat().st_mode & 0o777) == "0o600"
    assert key in first[1]
    assert works(key)
    assert "/login/link/" in first[-1]

    second = run("local_setup")
    assert (tmp_path / "api_key").read_text().strip() == key
    assert not any(key in line for line in second)
    assert "/login/link/" in second[-1]
    assert second[-1] != first[-1]
    assert ApiKey.objects.filter(account__name="local").count() == 1


def test_local_setup_makes_no_link_for_a_deactivated_local_user(
    settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    run("local_setup")
    get_user_model().objects.filter(username="local").update(is_active=False)

    again = run("local_setup")

    assert again[-1] == (
        "User local is deactivated: no login link (make it active again in the admin to log "
        "in with one)."
    )
    assert get_user_model().objects.get(username="local").loginlink_set.count() == 1


def test_a_login_links_token_is_not_written_to_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It was, whole: anyone who could read the log within 15 minutes could log in."""
    account, _ = services.account_get_or_create(name="acme")
    user = services.user_create(account=account, username="dee", password=None)
    token = services.login_link_create(user=user)
    with caplog.at_level("INFO", logger="access"):
        log_in_by_link(Client(enforce_csrf_checks=True), f"/login/link/{token}/")
    lines = [record.getMessage() for record in caplog.records if record.name == "access"]
    assert lines == ["GET /login/link/<token>/ 200", "POST /login/link/<token>/ 302"]
    assert all(token not in str(vars(record)) for record in caplog.records)
