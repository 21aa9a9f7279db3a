"""The Django admin: requests, products and images to look at (nothing to edit here; the
service changes them). Searchable by request id, uploaded file name and product name."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from processing.models import ProcessingRequest, Product, ProductImage, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProcessingRequest)
class ProcessingRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "request_id",
        "file_name",
        "status",
        "total_products",
        "total_images",
        "succeeded_images",
        "reused_images",
        "failed_images",
        "created_at",
        "finished_at",
        "expired_at",
        "deleted_by_owner",
    ]
    list_filter = ["status", "deleted_by_owner"]
    search_fields = ["request_id", "file_name", "products__product_name"]
    date_hierarchy = "created_at"


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ["serial", "product_name", "request", "position"]
    search_fields = ["product_name", "request__request_id"]
    list_select_related = ["request"]

    @admin.display(description="S. No.", ordering="serial_number")
    def serial(self, product: Product) -> str:
        return product.serial_as_written


@admin.register(ProductImage)
class ProductImageAdmin(ReadOnlyAdmin):
    list_display = [
        "input_url",
        "status",
        "error_code",
        "input_bytes",
        "output_bytes",
        "width",
        "height",
        "attempts",
    ]
    list_filter = ["status", "error_code", "output_format"]
    search_fields = ["product__product_name", "request__request_id", "input_url"]
    list_select_related = ["product"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "request", "state", "attempts", "last_status_code", "created_at"]
    list_filter = ["state"]
    search_fields = ["event_id", "request__request_id"]
