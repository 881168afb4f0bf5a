"""pairwise_claim(): the engine's claim of a new pair, in one round trip on PostgreSQL; and the indexes of
progress's counts (a project's open regular pairs, a rater's judgments in a project).

annotation.services.engine calls it for every new assignment on PostgreSQL; on SQLite (the quickstart,
where IMMEDIATE transactions serialise every claim) the engine claims with the ORM instead. The rules
are the engine's (see its docstring): candidates nearest completion first, then the oldest; each locked
with FOR UPDATE SKIP LOCKED and its places counted again under the lock, by a statement whose snapshot
is newer than the lock (a VOLATILE function takes a new snapshot per statement); response A on the side
it was shown on least, ties alternating with the pair's id. When the rater holds an open assignment in
the project after all, it is returned instead (already_held) and nothing is claimed.

SKIP LOCKED passes over a pair whose row another request holds while it claims a place on it (or records a
judgment on it). When every pair with a free place was passed over that way, the claim waits for one such
pair's row (briefly: LOCK_WAIT) and looks once more, now that the other request has committed: raters
asking at the same moment for the last pairs are all served, not told that nothing is left. A wait that
runs out, or that would deadlock (two judgments with next, each holding the pair the other wants), gives
up and claims nothing; the caller then finds the free place (selectors.rater_wait_seconds) and says to
ask again in a second.
"""

from django.db import migrations, models

# How long a claim waits for the row of a pair another request holds, when that pair is the only way to a
# free place: far longer than a claim's or a judgment's transaction, and shorter than PostgreSQL's
# deadlock_timeout (1 s by default), so a wait each way gives up before the deadlock check runs.
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
        FOR level IN REVERSE (CASE WHEN p_gold THEN 0 ELSE p_quota - 1 END) .. 0 LOOP
            LOOP
                EXIT WHEN cardinality(tried) >= p_attempts;
                IF p_gold THEN
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
                                                AND h.lease_expires_at > p_now) < p_quota
                    ORDER BY p.id
                    LIMIT 1
                    -- Row locks: a pair another request is filling is skipped, not waited for (but see
                    -- below when nothing else is free).
                    FOR UPDATE OF p SKIP LOCKED;
                END IF;
                EXIT WHEN candidate IS NULL;
                -- The probe's snapshot predates our lock; this statement's is newer, so it sees every
                -- place taken by a request that held the pair before us.
                SELECT p.judgment_count,
                       count(a.id) FILTER (WHERE a.status = 'active'),
                       count(a.id) FILTER (WHERE a.shown_left = 'a'),
                       count(a.id) FILTER (WHERE a.shown_left = 'b')
                  INTO judged, held, on_a, on_b
                  FROM annotation_pair p
                  LEFT JOIN annotation_assignment a ON a.pair_id = p.id
                       AND (a.status = 'judged' OR (a.status = 'active' AND a.lease_expires_at > p_now))
                 WHERE p.id = candidate
                 GROUP BY p.judgment_count;
                IF p_gold OR judged + held < p_quota THEN
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
        WHERE p.project_id = p_project AND p.gold IS NULL AND p.judgment_count < p_quota
          AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                          WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
          AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                  WHERE h.pair_id = p.id AND h.status = 'active'
                                    AND h.lease_expires_at > p_now) < p_quota
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


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS"
            " pairwise_claim(bigint, bigint, timestamptz, integer, integer, boolean, integer)"
        )


class Migration(migrations.Migration):
    dependencies = [("annotation", "0004_very_fast_threshold")]

    operations = [
        migrations.RunPython(create_function, drop_function),
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(
                condition=models.Q(("gold__isnull", True)),
                fields=["project", "judgment_count"],
                name="pair_open_regular",
            ),
        ),
        migrations.AddIndex(
            model_name="judgment",
            index=models.Index(fields=["rater", "project"], name="judgment_rater_project"),
        ),
    ]
