"""Django's CommonMiddleware, with a redirect that keeps the method."""

from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.middleware.common import CommonMiddleware
from django.utils.http import escape_leading_slashes


class PermanentRedirectKeepingMethod(HttpResponsePermanentRedirect):
    """308: the client asks again with the same method and body (301 turns a POST into a
    GET, which an API route then answers 405, "Method GET not allowed")."""

    status_code = 308


class CommonKeepingMethodMiddleware(CommonMiddleware):
    """A URL without its trailing slash (POST /api/upload) is sent on to the one with it
    by a 308, for every method: Django's own sends a 301, and refuses a POST outright when
    DEBUG is on, since a 301 cannot carry it."""

    response_redirect_class = PermanentRedirectKeepingMethod

    def get_full_path_with_slash(self, request: HttpRequest) -> str:
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))
