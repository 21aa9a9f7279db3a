import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("processing", "0004_requests_owned_by_default_account"),
    ]

    operations = [
        migrations.AlterField(
            model_name="processingrequest",
            name="account",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="requests",
                to="accounts.account",
            ),
        ),
    ]
