from django.db import migrations


class Migration(migrations.Migration):
    """Issue 23's lanes side by side: files (the blob ledger) and the queues' reply mode."""

    dependencies = [("cases", "0013_files"), ("cases", "0013_reply_mode")]
    operations: list = []
