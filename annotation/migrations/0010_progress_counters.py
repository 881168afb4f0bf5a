"""Counters kept by the writes (annotation.services.engine.counters): a project's open, regular and gold
pairs and data version in COUNTER_SHARDS rows, each rater's judgments and finished open pairs; filled here
for existing projects by the same recount as manage.py recount_progress. Pair.longer: which response is
longer, computed by the database (the agreement report reads it instead of the texts). Judgments indexed by
(project, id) for the exports' keyset chunks. The index of progress's old count of open pairs goes: a
counter replaces it, and every judgment no longer updates it.
"""

import django.db.models.deletion
import django.db.models.functions.text
import django.db.models.lookups
from django.db import migrations, models


def fill_counters(apps, schema_editor):
    from annotation.services.engine.counters import counters_recount

    for project in apps.get_model("annotation", "Project").objects.all():
        counters_recount(project=project)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0009_pair_review"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProjectCounter",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("shard", models.PositiveSmallIntegerField()),
                ("open_pairs", models.BigIntegerField(default=0)),
                ("regular_pairs", models.BigIntegerField(default=0)),
                ("gold_pairs", models.BigIntegerField(default=0)),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="RaterProgress",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("done", models.BigIntegerField(default=0)),
                ("finished", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RemoveIndex(
            model_name="pair",
            name="pair_open_regular",
        ),
        migrations.AddField(
            model_name="pair",
            name="longer",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Case(
                    models.When(
                        django.db.models.lookups.GreaterThan(
                            django.db.models.functions.text.Length("response_a"),
                            django.db.models.functions.text.Length("response_b"),
                        ),
                        then=models.Value(0),
                    ),
                    models.When(
                        django.db.models.lookups.GreaterThan(
                            django.db.models.functions.text.Length("response_b"),
                            django.db.models.functions.text.Length("response_a"),
                        ),
                        then=models.Value(1),
                    ),
                    default=models.Value(-1),
                ),
                output_field=models.SmallIntegerField(),
            ),
        ),
        migrations.AddIndex(
            model_name="judgment",
            index=models.Index(fields=["project", "id"], name="judgment_project_id"),
        ),
        migrations.AddField(
            model_name="projectcounter",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="counters", to="annotation.project"
            ),
        ),
        migrations.AddField(
            model_name="raterprogress",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="rater_progress",
                to="annotation.project",
            ),
        ),
        migrations.AddField(
            model_name="raterprogress",
            name="rater",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="progress",
                to="annotation.rater",
            ),
        ),
        migrations.AddConstraint(
            model_name="projectcounter",
            constraint=models.UniqueConstraint(fields=("project", "shard"), name="project_counter_shard"),
        ),
        migrations.AddConstraint(
            model_name="raterprogress",
            constraint=models.UniqueConstraint(fields=("rater", "project"), name="rater_progress_unique"),
        ),
        migrations.RemoveIndex(
            model_name="pair",
            name="pair_engine_order",
        ),
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                fields=["project", "judgment_count", "id"],
                include=("longer", "gold"),
                name="pair_engine_order",
            ),
        ),
        migrations.RunPython(fill_counters, migrations.RunPython.noop),
    ]
