"""Connection limits staff change at runtime (one row; blank fields keep the configured defaults)."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rooms', '0003_authtoken_expires_at'),
    ]

    operations = [
        migrations.CreateModel(
            name='ConnectionLimitOverrides',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('per_user', models.PositiveIntegerField(blank=True, help_text='sockets per user; blank: the configured default', null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='per user')),
                ('per_room', models.PositiveIntegerField(blank=True, help_text='sockets per room; blank: the configured default', null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='per room')),
                ('global_limit', models.PositiveIntegerField(blank=True, help_text='sockets in all; blank: the configured default', null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='global')),
                ('idle_timeout_secs', models.PositiveIntegerField(blank=True, help_text='seconds without a frame from the client; blank: the configured default', null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='idle timeout')),
                ('max_duration_secs', models.PositiveIntegerField(blank=True, help_text='seconds a socket may stay open; blank: the configured default', null=True, validators=[django.core.validators.MinValueValidator(1)], verbose_name='maximum duration')),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name': 'connection limits',
                'verbose_name_plural': 'connection limits',
            },
        ),
    ]
