from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reward_models", "0002_trainingrun_sent_at_send_count"),
    ]

    operations = [
        migrations.AddField(
            model_name="activemodel",
            name="forced_reason",
            field=models.TextField(blank=True, default=""),
        ),
    ]
