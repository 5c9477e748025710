from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "example.accounts"
    label = "accounts"
