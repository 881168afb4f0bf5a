"""Judgment.pair_longer: the pair's longer response, copied onto each judgment so that the agreement report
reads the judgments alone (issue 22: the cold report read the judged pairs beside them, as long again as
the judgments). Existing judgments take their pair's value (a judged pair's texts cannot change).
pair_engine_order no longer carries longer and gold (only that read used them); pair_gold finds a
project's gold pairs without walking the others."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_longer(apps, schema_editor):
    Judgment = apps.get_model("annotation", "Judgment")
    Pair = apps.get_model("annotation", "Pair")
    Judgment.objects.update(pair_longer=Subquery(Pair.objects.filter(pk=OuterRef("pair_id")).values("longer")))


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0014_claim_active_selection"),
    ]

    operations = [
        migrations.AddField(
            model_name="judgment",
            name="pair_longer",
            field=models.SmallIntegerField(editable=False, null=True),
        ),
        migrations.RunPython(copy_longer, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="judgment",
            name="pair_longer",
            field=models.SmallIntegerField(editable=False),
        ),
        migrations.AddConstraint(
            model_name="judgment",
            constraint=models.CheckConstraint(
                condition=models.Q(("pair_longer__in", [-1, 0, 1])), name="judgment_pair_longer_valid"
            ),
        ),
        migrations.RemoveIndex(model_name="pair", name="pair_engine_order"),
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(fields=["project", "judgment_count", "id"], name="pair_engine_order"),
        ),
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                condition=models.Q(gold__isnull=False),
                fields=["project", "id"],
                include=("gold",),
                name="pair_gold",
            ),
        ),
    ]
