from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cases.models import ApiToken


class Command(BaseCommand):
    help = "Issue an intake API token for a user; the token is printed once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("name", help="What the token is for, e.g. 'web form'.")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist as err:
            raise CommandError(f"No user {options['username']!r}.") from err
        _, key = ApiToken.issue(user, options["name"])
        self.stdout.write(key)
