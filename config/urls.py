from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from accounts import pages as account_pages
from accounts import views as account_views
from imaging.encode import EXTENSIONS
from processing import apis, control_apis, list_apis, pages
from processing.health import healthz, livez
from processing.metrics import metrics_view

# Every format an output may be written in (jpg, webp, avif).
OUTPUT_EXTENSIONS = "|".join(sorted(EXTENSIONS.values()))

urlpatterns = [
    path("", pages.home, name="home"),
    path("requests/<uuid:request_id>/", pages.request_detail, name="request-page"),
    path("requests/<uuid:request_id>/delete/", pages.request_delete, name="request-delete"),
    path(
        "requests/<uuid:request_id>/output.csv",
        pages.request_output_csv,
        name="request-output-csv-page",
    ),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("metrics", metrics_view, name="metrics"),
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("login/link/<str:token>/", account_views.login_link, name="login-link"),
    path("logout/", account_views.LogoutView.as_view(), name="logout"),
    path("account/", account_pages.account_detail, name="account"),
    path("account/webhook-test/", pages.webhook_test, name="account-webhook-test"),
    path("account/keys/", account_pages.api_key_create, name="api-key-create"),
    path(
        "account/keys/<str:prefix>/revoke/",
        account_pages.api_key_revoke,
        name="api-key-revoke",
    ),
    path(
        "account/webhook-secret/rotate/",
        account_pages.webhook_secret_rotate,
        name="webhook-secret-rotate",
    ),
    path("admin/", admin.site.urls),
    # Open to all, as /healthz: what the API is, not what anyone asked of it.
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="docs",
    ),
    path("api/upload/", apis.UploadApi.as_view(), name="upload"),
    path("api/status/<str:request_id>/", apis.StatusApi.as_view(), name="request-status"),
    path("api/requests/", list_apis.RequestsApi.as_view(), name="requests"),
    path("api/webhook-test/", apis.WebhookTestApi.as_view(), name="webhook-test"),
    path("api/requests/<str:request_id>/", control_apis.RequestApi.as_view(), name="request"),
    path(
        "api/requests/<str:request_id>/products/",
        apis.ProductsApi.as_view(),
        name="request-products",
    ),
    path(
        "api/requests/<str:request_id>/webhook/",
        apis.WebhookApi.as_view(),
        name="request-webhook",
    ),
    path(
        "api/requests/<str:request_id>/cancel/",
        control_apis.CancelApi.as_view(),
        name="request-cancel",
    ),
    path(
        "api/requests/<str:request_id>/retry/",
        control_apis.RetryApi.as_view(),
        name="request-retry",
    ),
    path(
        "api/requests/<str:request_id>/rerun/",
        control_apis.RerunApi.as_view(),
        name="request-rerun",
    ),
    path(
        "api/requests/<str:request_id>/output.csv",
        apis.OutputCsvApi.as_view(),
        name="request-output-csv",
    ),
    # Output images, public like the shop's own image URLs (their names hold the request's
    # random id). Output CSVs are not served here: they name a catalogue's products, so
    # only the owner's API route hands them out. A deployment with a CDN or object store in
    # front points PUBLIC_BASE_URL there instead.
    re_path(
        rf"^media/(?P<path>output_images/[0-9a-f-]{{36}}/[0-9]+\.(?:{OUTPUT_EXTENSIONS}))$",
        serve,
        {"document_root": settings.MEDIA_ROOT},
        name="media",
    ),
]

handler400 = "processing.exceptions.bad_request_view"
handler404 = "processing.exceptions.not_found_view"
handler500 = "processing.exceptions.server_error_view"
