"""The review queue's marks on pairs (extra judgments asked for, left out of training) and the record of
each reviewer's action; pairwise_claim() redefined so that a pair's quota is judgments_per_pair +
extra_judgments.

Changes to the claim of migration 0005, each marked "extra_judgments" in the SQL below:
1. Regular pairs: a first probe, before the judgment_count levels, of raised pairs (extra_judgments > 0,
   the partial index pair_raised) with a place free under their own quota, fullest first: a reviewer who
   asked for more votes gets them first.
2. Every comparison with the quota (the level probes, the recount under the lock, the look for a pair
   worth waiting for) is against p_quota + p.extra_judgments.
The function's signature is unchanged. annotation.services.engine.claim._claim_with_orm does the same on
SQLite.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# How long a claim waits for the row of a pair another request holds (migration 0005's LOCK_WAIT).
LOCK_WAIT = "300ms"

CLAIM_SQL = r"""
CREATE OR REPLACE FUNCTION pairwise_claim(
    p_project bigint, p_rater bigint, p_now timestamptz, p_lease_seconds integer,
    p_quota integer, p_gold boolean, p_attempts integer
) RETURNS TABLE (assignment_id bigint, pair_id bigint, shown_left varchar, already_held boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    open_id bigint;
    pass integer;
    level integer;
    candidate bigint;
    tried bigint[];
    judged integer;
    extra integer;
    held integer;
    on_a integer;
    on_b integer;
    side varchar;
    lock_wait text;
BEGIN
    -- The caller locked the rater's row and looked for their open assignment in the same statement, whose
    -- snapshot may predate the lock (a double click waited for it): look again, in a newer snapshot.
    SELECT a.id INTO open_id FROM annotation_assignment a
     WHERE a.rater_id = p_rater AND a.project_id = p_project AND a.status = 'active';
    IF open_id IS NOT NULL THEN
        RETURN QUERY SELECT a.id, a.pair_id, a.shown_left, true
                       FROM annotation_assignment a WHERE a.id = open_id;
        RETURN;
    END IF;
    -- Two passes at most: the second after waiting for a pair the first passed over (see below).
    FOR pass IN 1 .. 2 LOOP
        tried := '{}';
        -- Regular pairs one judgment_count level at a time, fullest first: each probe walks the
        -- (project, judgment_count, id) index in order and stops at the first free pair. Gold pairs (few,
        -- exempt from the quota) in one pass.
        -- extra_judgments: level p_quota stands for the raised pairs, probed first.
        FOR level IN REVERSE (CASE WHEN p_gold THEN 0 ELSE p_quota END) .. 0 LOOP
            LOOP
                EXIT WHEN cardinality(tried) >= p_attempts;
                IF NOT p_gold AND level = p_quota THEN
                    -- extra_judgments: pairs a reviewer asked more votes for, with a place free under
                    -- their own quota (walks the partial index pair_raised: few rows).
                    SELECT p.id INTO candidate FROM annotation_pair p
                    WHERE p.project_id = p_project AND p.gold IS NULL AND p.extra_judgments > 0
                      AND p.id <> ALL (tried)
                      AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                                      WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
                      AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                              WHERE h.pair_id = p.id AND h.status = 'active'
                                                AND h.lease_expires_at > p_now) < p_quota + p.extra_judgments
                    ORDER BY p.judgment_count DESC, p.id
                    LIMIT 1
                    FOR UPDATE OF p SKIP LOCKED;
                ELSIF p_gold THEN
                    SELECT p.id INTO candidate FROM annotation_pair p
                    WHERE p.project_id = p_project AND p.gold IS NOT NULL AND p.id <> ALL (tried)
                      AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                                      WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
                    ORDER BY p.judgment_count DESC, p.id
                    LIMIT 1
                    FOR UPDATE OF p SKIP LOCKED;
                ELSE
                    SELECT p.id INTO candidate FROM annotation_pair p
                    WHERE p.project_id = p_project AND p.gold IS NULL AND p.judgment_count = level
                      AND p.id <> ALL (tried)
                      -- OFFSET 0 keeps this a probe of (rater, pair)'s unique index for each candidate:
                      -- as an anti-join, the function's generic plan reads every assignment of the project.
                      AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                                      WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
                      AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                              WHERE h.pair_id = p.id AND h.status = 'active'
                                                AND h.lease_expires_at > p_now)
                          < p_quota + p.extra_judgments  -- extra_judgments
                    ORDER BY p.id
                    LIMIT 1
                    -- Row locks: a pair another request is filling is skipped, not waited for (but see
                    -- below when nothing else is free).
                    FOR UPDATE OF p SKIP LOCKED;
                END IF;
                EXIT WHEN candidate IS NULL;
                -- The probe's snapshot predates our lock; this statement's is newer, so it sees every
                -- place taken by a request that held the pair before us.
                SELECT p.judgment_count, p.extra_judgments,
                       count(a.id) FILTER (WHERE a.status = 'active'),
                       count(a.id) FILTER (WHERE a.shown_left = 'a'),
                       count(a.id) FILTER (WHERE a.shown_left = 'b')
                  INTO judged, extra, held, on_a, on_b
                  FROM annotation_pair p
                  LEFT JOIN annotation_assignment a ON a.pair_id = p.id
                       AND (a.status = 'judged' OR (a.status = 'active' AND a.lease_expires_at > p_now))
                 WHERE p.id = candidate
                 GROUP BY p.judgment_count, p.extra_judgments;
                IF p_gold OR judged + held < p_quota + extra THEN  -- extra_judgments
                    side := CASE
                        WHEN on_a < on_b THEN 'a'
                        WHEN on_b < on_a THEN 'b'
                        WHEN mod(candidate + on_a, 2) = 0 THEN 'a'
                        ELSE 'b'
                    END;
                    RETURN QUERY
                        INSERT INTO annotation_assignment AS n
                            (project_id, pair_id, rater_id, shown_left, status, served_at, lease_expires_at,
                             finished_at, skip_reason)
                        VALUES (p_project, candidate, p_rater, side, 'active', p_now,
                                p_now + make_interval(secs => p_lease_seconds), NULL, '')
                        RETURNING n.id, n.pair_id, n.shown_left, false;
                    RETURN;
                END IF;
                tried := tried || candidate;
            END LOOP;
        END LOOP;
        -- Nothing claimed. Gold pairs are shown to any number of raters (the caller claims a regular pair
        -- instead); a second pass has had its wait.
        EXIT WHEN p_gold OR pass = 2;
        -- Is a place free for this rater on a pair the probes passed over because another request holds
        -- its row? This statement's snapshot is newer than theirs, and without a lock it skips nothing.
        SELECT p.id INTO candidate FROM annotation_pair p
        WHERE p.project_id = p_project AND p.gold IS NULL
          -- extra_judgments: open under the project's quota, or raised (index pair_raised).
          AND (p.judgment_count < p_quota OR p.extra_judgments > 0)
          AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                          WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
          AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                  WHERE h.pair_id = p.id AND h.status = 'active'
                                    AND h.lease_expires_at > p_now)
              < p_quota + p.extra_judgments  -- extra_judgments
        ORDER BY p.judgment_count DESC, p.id
        LIMIT 1;
        EXIT WHEN candidate IS NULL;
        -- Wait for that request to end (its row lock goes with it), then look again from the top: the
        -- second pass's snapshot sees what it did, and its probes do not skip a row locked by us.
        lock_wait := current_setting('lock_timeout');
        BEGIN
            PERFORM set_config('lock_timeout', '__LOCK_WAIT__', true);
            PERFORM 1 FROM annotation_pair p WHERE p.id = candidate FOR UPDATE;
            PERFORM set_config('lock_timeout', lock_wait, true);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- Held too long, or a wait each way (two judgments with next, each holding the pair the
            -- other wants): claim nothing. The savepoint's rollback restores lock_timeout.
            RETURN;
        END;
    END LOOP;
    RETURN;
END;
$$;
""".replace("__LOCK_WAIT__", LOCK_WAIT)

def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CLAIM_SQL)


def restore_function(apps, schema_editor):
    """Back to migration 0005's claim."""
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        schema_editor.execute(import_module("annotation.migrations.0005_engine_claim_function").CLAIM_SQL)



class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0008_judgment_revisions'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PairReviewAction',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('action', models.CharField(choices=[('more_votes', 'Ask for more votes'), ('leave_out', 'Leave out of training'), ('keep', 'Keep as it is')], max_length=10)),
                ('extra_judgments', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('reason', models.TextField()),
                ('judgment_count', models.PositiveIntegerField()),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.AddField(
            model_name='pair',
            name='extra_judgments',
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name='pair',
            name='left_out',
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddIndex(
            model_name='pair',
            index=models.Index(condition=models.Q(('extra_judgments__gt', 0), ('gold__isnull', True)), fields=['project', 'judgment_count', 'id'], name='pair_raised'),
        ),
        migrations.AddConstraint(
            model_name='pair',
            constraint=models.CheckConstraint(condition=models.Q(('extra_judgments__lte', 25)), name='pair_extra_judgments_range', violation_error_message='At most 25 extra judgments per pair.'),
        ),
        migrations.AddField(
            model_name='pairreviewaction',
            name='by',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='pairreviewaction',
            name='pair',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='review_actions', to='annotation.pair'),
        ),
        migrations.AddField(
            model_name='pairreviewaction',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='review_actions', to='annotation.project'),
        ),
        migrations.AddIndex(
            model_name='pairreviewaction',
            index=models.Index(fields=['pair', 'action'], name='review_action_pair'),
        ),
        migrations.AddConstraint(
            model_name='pairreviewaction',
            constraint=models.CheckConstraint(condition=models.Q(('action__in', ['more_votes', 'leave_out', 'keep'])), name='review_action_valid'),
        ),
        migrations.AddConstraint(
            model_name='pairreviewaction',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('action', 'more_votes'), ('extra_judgments__gte', 1)), models.Q(models.Q(('action', 'more_votes'), _negated=True), ('extra_judgments__isnull', True)), _connector='OR'), name='review_action_extra_judgments'),
        ),
        migrations.AddConstraint(
            model_name='pairreviewaction',
            constraint=models.CheckConstraint(condition=models.Q(('reason', ''), _negated=True), name='review_action_reason_given'),
        ),
        migrations.RunPython(create_function, restore_function),
    ]
