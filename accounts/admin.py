"""The admin: make accounts, make and revoke their API keys (a new key is shown once), and
say which account each user belongs to. Webhook secrets stay out of sight here; `manage.py
account secret|rotate-secret` shows and rotates them."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from accounts.models import Account, ApiKey, Member
from accounts.views import AdminLoginForm

# The library's own key model, which this service does not use (keys belong to accounts).
admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = ("prefix", "name", "account", "created", "last_used_at", "revoked")
    list_filter = ("account", "revoked")  # type: ignore[assignment]
    search_fields = ("name", "prefix", "account__name")  # type: ignore[assignment]
    fields = ("prefix", "name", "account", "expiry_date", "revoked", "last_used_at")
    readonly_fields = ("prefix", "last_used_at")
    list_select_related = ("account",)


class MemberInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Member
    extra = 0


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "created_at")
    search_fields = ("name",)
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    inlines = [MemberInline]


class MemberOfAccount(admin.StackedInline):  # type: ignore[type-arg]
    model = Member
    can_delete = False
    verbose_name = "account"


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AccountUserAdmin(UserAdmin):  # type: ignore[type-arg]
    inlines = [MemberOfAccount]


# The admin's login page counts wrong passwords as the site's does (accounts/views.py).
admin.site.login_form = AdminLoginForm
