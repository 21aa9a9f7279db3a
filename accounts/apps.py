from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        # The OpenAPI schema's description of API key authentication (drf-spectacular
        # finds extensions by importing them).
        from accounts import schema, signals  # noqa: F401
