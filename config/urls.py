from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from processing import apis, pages
from processing.health import healthz
from processing.metrics import metrics_view

urlpatterns = [
    path("", pages.home, name="home"),
    path("requests/<uuid:request_id>/", pages.request_detail, name="request-page"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/upload/", apis.UploadApi.as_view(), name="upload"),
    path("api/status/<str:request_id>/", apis.StatusApi.as_view(), name="request-status"),
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
        "api/requests/<str:request_id>/output.csv",
        apis.OutputCsvApi.as_view(),
        name="request-output-csv",
    ),
    # Output images. serve() refuses paths outside the folder; a deployment with a CDN or
    # object store in front points PUBLIC_BASE_URL there instead.
    re_path(
        r"^media/(?P<path>.+)$",
        serve,
        {"document_root": settings.MEDIA_ROOT},
        name="media",
    ),
]

handler404 = "processing.exceptions.not_found_view"
handler500 = "processing.exceptions.server_error_view"
