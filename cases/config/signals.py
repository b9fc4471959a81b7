"""What changes a user's access, told to cases/config/access_version.py: every save or link that
decides who sees what bumps the users it touches (or the shared configuration's version).
Each bump is made at once and again when the transaction commits: a re-check woken by the
first may still read the old rows, the second wakes it after they are written."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver

from cases.config import access_version
from cases.models import CaseAttribute, Queue

User = get_user_model()


def _bump(*who: int | str) -> None:
    if who:
        access_version.bump(*who)
        transaction.on_commit(lambda: access_version.bump(*who))


@receiver(post_save, sender=User)
def _user_saved(instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login: nobody's access changed
    _bump(instance.pk)


@receiver(post_delete, sender=User)
def _user_deleted(instance: Any, **kwargs: Any) -> None:
    _bump(instance.pk)


@receiver(user_logged_out)
def _logged_out(user: Any = None, **kwargs: Any) -> None:
    if user is not None and user.pk is not None:
        _bump(user.pk)


def _linked(instance: Any, action: str, pk_set: Any, members: Any) -> None:
    """An m2m change between users and queues or groups, made from either side."""
    if isinstance(instance, User):
        if action.startswith("post_"):
            _bump(instance.pk)
        return
    if action == "pre_clear":  # the links are gone after: remember whom they held
        instance._tracerail_cleared = list(members(instance).values_list("pk", flat=True))
    elif action == "post_clear":
        _bump(*getattr(instance, "_tracerail_cleared", []))
    elif action in ("post_add", "post_remove"):
        _bump(*(pk_set or ()))


@receiver(m2m_changed, sender=Queue.agents.through)
def _queue_agents(instance: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
    _linked(instance, action, pk_set, lambda q: q.agents)


@receiver(m2m_changed, sender=User.groups.through)
def _user_groups(instance: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
    _linked(instance, action, pk_set, lambda g: g.user_set)


@receiver(pre_delete, sender=Queue)
@receiver(pre_delete, sender=Group)
def _links_deleted(instance: Any, **kwargs: Any) -> None:
    # Deleting a queue or group drops its links without an m2m signal: bump its members.
    members = instance.agents if isinstance(instance, Queue) else instance.user_set
    _bump(*members.values_list("pk", flat=True), access_version.CONFIG)


@receiver(post_save, sender=Queue)
@receiver(post_save, sender=Group)
@receiver(post_save, sender=CaseAttribute)
@receiver(post_delete, sender=CaseAttribute)
def _shared_config(**kwargs: Any) -> None:
    _bump(access_version.CONFIG)
