"""Notices keep references only (issue 22, defect 7): the copied case title, line and comment
go, and so do their bytes. Non-atomic: VACUUM cannot run inside a transaction."""

from django.db import migrations, models


def blank_the_copies(apps, schema_editor):
    # PostgreSQL's DROP COLUMN only hides a column: the values stay in the rows until a
    # rewrite. Blanked first, the rewrite below leaves nothing of them.
    apps.get_model("cases", "Notification").objects.update(text="", body="", title="")


def compact(apps, schema_editor):
    """The dropped text out of the database files too: SQLite keeps freed pages (and the old
    table's) until VACUUM; PostgreSQL keeps dead row versions until a full rewrite."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("VACUUM")
        elif connection.vendor == "postgresql":
            cursor.execute("VACUUM FULL cases_notification")


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('cases', '0011_delivery_ledger_fixed_ids'),
    ]

    operations = [
        migrations.RunPython(blank_the_copies, migrations.RunPython.noop, atomic=True),
        migrations.RemoveField(model_name='notification', name='text'),
        migrations.RemoveField(model_name='notification', name='body'),
        migrations.RemoveField(model_name='notification', name='title'),
        migrations.AddField(
            model_name='notification',
            name='actor',
            field=models.CharField(blank=True, default='', max_length=150),
        ),
        migrations.RunPython(compact, migrations.RunPython.noop, atomic=False),
    ]
