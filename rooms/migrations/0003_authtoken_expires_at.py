"""Bearer tokens expire: tokens issued before this get 30 days from their issue."""

from datetime import timedelta

from django.db import migrations, models

LIFETIME_OF_OLDER_TOKENS = timedelta(days=30)


def expire_older_tokens(apps, schema_editor):
    AuthToken = apps.get_model("rooms", "AuthToken")
    AuthToken.objects.update(expires_at=models.F("created_at") + LIFETIME_OF_OLDER_TOKENS)


class Migration(migrations.Migration):
    dependencies = [
        ("rooms", "0002_movie_subtitles"),
    ]

    operations = [
        migrations.AddField(
            model_name="authtoken",
            name="expires_at",
            field=models.DateTimeField(db_index=True, null=True),
        ),
        migrations.RunPython(expire_older_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="authtoken",
            name="expires_at",
            field=models.DateTimeField(db_index=True),
        ),
    ]
