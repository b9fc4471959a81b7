from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("cases", "0012_notification_references")]

    operations = [
        migrations.AddField(
            model_name="queue",
            name="reply_default",
            field=models.CharField(
                choices=[("public", "Public reply (mailed to the requester)"),
                         ("internal", "Internal note (agents only)")],
                default="public",
                help_text="The mode the comment box on this queue's cases starts in; agents "
                          "can switch it for each comment.",
                max_length=8),
        ),
    ]
