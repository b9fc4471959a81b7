"""Mail in (issue 23): queue addresses (the default queues answer at example.com), the
ignored-mail list and the per-sender count of cases opened by mail."""

import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models

DEMO_ADDRESSES = {"billing": "billing@example.com", "technical": "technical@example.com",
                  "general": "general@example.com"}


def demo_addresses(apps, schema_editor):
    Queue = apps.get_model("cases", "Queue")
    for slug, address in DEMO_ADDRESSES.items():
        Queue.objects.filter(slug=slug, email="").update(email=address)


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0012_notification_references'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='MailIgnored',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('door', models.CharField(max_length=60)),
                ('sender', models.CharField(blank=True, max_length=254)),
                ('message_id', models.CharField(blank=True, max_length=320)),
                ('held', models.BooleanField(default=False)),
                ('reason', models.CharField(max_length=200)),
            ],
            options={
                'verbose_name': 'ignored mail',
                'verbose_name_plural': 'ignored mail',
                'ordering': ['-at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='MailOpened',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('case_id', models.CharField(max_length=20, unique=True)),
                ('sender', models.CharField(db_index=True, max_length=254)),
                ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
        ),
        migrations.AddField(
            model_name='queue',
            name='email',
            field=models.EmailField(blank=True, help_text='Mail to this address opens a case in this queue (e.g. billing@example.com); empty: none.', max_length=254),
        ),
        migrations.AddConstraint(
            model_name='queue',
            constraint=models.UniqueConstraint(django.db.models.functions.text.Lower('email'), condition=models.Q(('email', ''), _negated=True), name='queue_email_unique', violation_error_message='Another queue answers at this address.'),
        ),
        migrations.RunPython(demo_addresses, migrations.RunPython.noop),
    ]
