from __future__ import annotations

from django.db import migrations

DEFAULT_QUEUES = (("billing", "Billing"), ("technical", "Technical"), ("general", "General"))


def create_queues(apps, schema_editor):
    Queue = apps.get_model("cases", "Queue")
    for slug, name in DEFAULT_QUEUES:
        Queue.objects.get_or_create(slug=slug, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = [("cases", "0002_config")]
    operations = [migrations.RunPython(create_queues, migrations.RunPython.noop)]
