from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

from cases.models import Queue

DEMO_USERS = (
    # username, role group, staff/superuser, queues worked (agents only)
    ("agent", "Agent", False, ("billing", "general")),
    ("agent2", "Agent", False, ("technical", "general")),
    ("supervisor", "Supervisor", False, ()),
    ("admin", "Admin", True, ()),
)


class Command(BaseCommand):
    help = "Create demo users for each role; passwords are printed once and kept 0600 in var/."

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.VAR_DIR) / "demo-credentials.txt"
        created: list[tuple[str, str, str]] = []
        for username, role, is_admin, queues in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                # Made before they had addresses (issue 16): notifications need one.
                User.objects.filter(username=username, email="").update(
                    email=f"{username}@example.com")
                continue
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(
                username, email=f"{username}@example.com", password=password,
                is_staff=is_admin, is_superuser=is_admin,
            )
            user.groups.add(Group.objects.get(name=role))
            for queue in Queue.objects.filter(slug__in=queues):
                queue.agents.add(user)
            created.append((username, role, password))
        if not created:
            self.stdout.write(f"demo_users: demo users exist; their passwords are in {path}")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            for username, role, password in created:
                fh.write(f"{username}\t{role}\t{password}\n")
        os.chmod(path, 0o600)
        self.stdout.write("demo_users: created (shown once; also kept in " f"{path}):")
        for username, role, password in created:
            self.stdout.write(f"  {role:<11} {username:<11} {password}")
