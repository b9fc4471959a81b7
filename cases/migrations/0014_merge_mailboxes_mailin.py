"""Joins the mail doors' and the mail pipeline's migrations (issue 23 lanes merged)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("cases", "0013_mailboxes"), ("cases", "0013_mailin")]
    operations: list = []
