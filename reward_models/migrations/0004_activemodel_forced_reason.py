from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reward_models", "0003_pair_scores"),
    ]

    operations = [
        # Why a run without a held-out evaluation was activated anyway (issue 21).
        migrations.AddField(
            model_name="activemodel",
            name="forced_reason",
            field=models.TextField(blank=True, default=""),
        ),
        # The auto-train policy form's constraints answered in words (no database change).
        migrations.AlterConstraint(
            model_name="autotrainpolicy",
            name="autotrain_after_positive",
            constraint=models.CheckConstraint(
                condition=models.Q(("after_new_judgments__isnull", True), ("after_new_judgments__gte", 1), _connector="OR"),
                name="autotrain_after_positive",
                violation_error_message="New judgments must be 1 or more (leave it empty: no such trigger).",
            ),
        ),
        migrations.AlterConstraint(
            model_name="autotrainpolicy",
            name="autotrain_every_positive",
            constraint=models.CheckConstraint(
                condition=models.Q(("every_hours__isnull", True), ("every_hours__gte", 1), _connector="OR"),
                name="autotrain_every_positive",
                violation_error_message="Hours must be 1 or more (leave it empty for no such trigger).",
            ),
        ),
    ]
