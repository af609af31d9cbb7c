"""`Profile` becomes `AccountSettings` (inference has a `Profile` of its own); its permissions follow."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def rename_permissions(apps, schema_editor, old="profile", new="accountsettings", name="account settings"):
    # Staff granted `accounts.view_profile` keep what they could see, as `accounts.view_accountsettings`.
    Permission = apps.get_model("auth", "Permission")
    for permission in Permission.objects.filter(content_type__app_label="accounts", codename__endswith=f"_{old}"):
        action = permission.codename.removesuffix(f"_{old}")
        permission.codename = f"{action}_{new}"
        permission.name = f"Can {action} {name}"
        permission.save(update_fields=["codename", "name"])


def restore_permissions(apps, schema_editor):
    rename_permissions(apps, schema_editor, old="accountsettings", new="profile", name="profile")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameModel("Profile", "AccountSettings"),
        migrations.AlterModelOptions(
            name="accountsettings",
            options={"verbose_name": "account settings", "verbose_name_plural": "account settings"},
        ),
        migrations.AlterField(
            model_name="accountsettings",
            name="user",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="account_settings",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(rename_permissions, restore_permissions),
    ]
