"""The table-less CacheDashboard model: the dashboard's delete permission and admin entry."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="CacheDashboard",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
            ],
            options={
                "verbose_name": "cache dashboard",
                "verbose_name_plural": "cache dashboard",
                "permissions": [
                    ("delete_cache_keys", "Can delete cache keys in the cache dashboard")
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
