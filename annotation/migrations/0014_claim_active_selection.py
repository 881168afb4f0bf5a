"""Uncertainty selection in pairwise_claim(): the pairs the active reward model is least sure of first, a
random arm drawing uniformly from the same candidates, and each assignment's arm and propensity.

pairwise_claim() is dropped and created again: it takes four more arguments (p_epsilon, p_draw, p_seed,
p_probes) and returns two more columns (arm, propensity). With p_epsilon null (a project under the default
order, one whose priorities no model has written yet, and every gold claim) it is migration 0011's claim,
statement for statement, and writes arm and propensity null.

With p_epsilon set (annotation.services.engine.claim passes the project's selection_epsilon when
Project.selection_in_effect is "uncertainty"), for a regular pair:

- C, the candidates: the project's regular pairs with a place free (judgments + unexpired leases below
  judgments_per_pair + extra_judgments, which makes them open) never served to this rater: the set the
  default order chooses from. |C| is counted first, in one statement (one snapshot), from the counters:
  the project's open pairs (annotation_projectcounter, summed), less the open pairs the rater finished
  (annotation_raterprogress: the rater holds no open assignment here, the claim has just checked, so
  these are all the open pairs ever served to them), less the open pairs not served to them whose places
  are all taken by unexpired leases (found through the project's open assignments, index
  assignment_active: at most one per rater).
- The greedy ("uncertainty") arm: migration 0011's order with the priority as one more key: raised pairs
  first, then judgment_count levels fullest first, within a level priority DESC NULLS LAST, then id (the
  index pair_uncertainty_order, walked in order and stopped at the first free pair).
- With probability p_epsilon (p_draw < p_epsilon; p_draw is uniform on [0, 1), drawn by the caller) the
  random arm: one pair uniform on C. Rejection sampling on the id range of the project's pairs (two
  probes of the index pair_project_id, which replaces the foreign key's own index): an id uniform on the
  range, accepted when it is a candidate whose row can be locked (SKIP LOCKED) and still has a place
  under the lock; up to p_probes tries. Then (the range mostly closed pairs, or other projects' pairs
  imported in between) a uniform offset into an enumeration of C (raised candidates, then the others
  in pair_uncertainty_order's order), up to p_attempts times. Either way uniform on C: an accepted probe
  is equally likely to be any candidate, and the offset is uniform on |C|. Integers are drawn exactly:
  52 random bits (two draws of 26, exact on PostgreSQL 14's 48-bit random() too), the top partial block
  refused. random() is seeded with the caller's p_seed (setseed, for this session's later calls too),
  so a test fixes every draw.
- propensity: the probability that this pair was chosen given the rule and C, (1 - eps) * [it is the
  greedy choice] + eps / |C|; a random draw that hits the greedy choice logs the same probability.

What is exact and what is not under concurrency. Exact: |C| in its statement's snapshot, the greedy order,
and the random arm's uniformity over the candidates whose rows no other request holds. Not exact:
- a candidate whose row another request holds at the instant of the probe (it is claiming a place on it,
  or recording a judgment on it) is refused like a non-candidate, so the random arm draws uniformly from
  C less those few pairs (at most one per request in flight), while the logged eps / |C| counts them;
- each statement of a VOLATILE function takes a new snapshot: a place taken or freed by a request that
  commits between the count and the probes changes C by a pair or two after |C| was counted;
- the greedy choice the random arm compares with is read without locks, so it may be a pair another
  request holds, which the greedy arm itself would have passed over;
- a random arm that finds nothing in p_probes + p_attempts tries (every candidate held or filled at that
  instant) falls back to the greedy arm and logs the greedy arm's probability.
All of these need another request on the same pairs at the same millisecond; the propensity is then off
by a pair or two in |C|.
"""

from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

_0011 = import_module("annotation.migrations.0011_claim_waits_without_queueing")

# A regular pair the rater may be given: never served to them, a place free under its quota (so open).
_CANDIDATE = """p.project_id = p_project AND p.gold IS NULL
                      -- OFFSET 0 keeps this a probe of (rater, pair)'s unique index for each candidate:
                      -- as an anti-join, the function's generic plan reads every assignment of the project.
                      AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                                      WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
                      AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                              WHERE h.pair_id = p.id AND h.status = 'active'
                                                AND h.lease_expires_at > p_now)
                          < p_quota + p.extra_judgments"""

# The greedy orders: raised pairs (few: sorted) and one judgment_count level (an index walk: pair_raised
# or pair_engine_order by id, pair_uncertainty_order by priority).
_RAISED = "p.extra_judgments > 0"
_LEVEL = "p.judgment_count = level"
_RAISED_ORDER = "p.judgment_count DESC, p.id"
_LEVEL_ORDER = "p.id"
_RAISED_BY_PRIORITY = "p.judgment_count DESC, p.priority DESC NULLS LAST, p.id"
_LEVEL_BY_PRIORITY = "p.priority DESC NULLS LAST, p.id"


def _probe(where: str, order: str, *, into: str = "candidate", lock: bool = True) -> str:
    """The first candidate in `order` among the pairs `where`; locked (SKIP LOCKED) and not among those
    tried, or (lock=False) read as it stands."""
    tried = "\n                      AND p.id <> ALL (tried)" if lock else ""
    locking = "\n                    FOR UPDATE OF p SKIP LOCKED" if lock else ""
    return f"""SELECT p.id INTO {into} FROM annotation_pair p
                    WHERE {where}{tried}
                      AND {_CANDIDATE}
                    ORDER BY {order}
                    LIMIT 1{locking};"""


def _uniform(span: str, into: str) -> str:
    """`into` := an integer uniform on [0, span), exactly (span > 0, below 2^52). The 52 bits come from
    two draws of 26: random() is k / 2^52 from PostgreSQL 15 on but k / 2^48 in 14, where one draw
    scaled to 2^52 is always a multiple of 16 (an even span would never give an odd result)."""
    return f"""LOOP
                    bits := floor(random() * 67108864)::bigint * 67108864
                            + floor(random() * 67108864)::bigint;  -- 2^26 * 2^26 = 2^52
                    EXIT WHEN bits < ({span}) * (4503599627370496 / ({span}));
                END LOOP;
                {into} := mod(bits, {span});"""


# The recount under the row lock, and the assignment inserted when a place is still free (chosen_arm and
# chosen_propensity set by the caller's branch).
_TAKE = """-- The probe's snapshot predates our lock; this statement's is newer, so it sees every
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
                IF p_gold OR judged + held < p_quota + extra THEN
                    side := CASE
                        WHEN on_a < on_b THEN 'a'
                        WHEN on_b < on_a THEN 'b'
                        WHEN mod(candidate + on_a, 2) = 0 THEN 'a'
                        ELSE 'b'
                    END;
                    RETURN QUERY
                        INSERT INTO annotation_assignment AS n
                            (project_id, pair_id, rater_id, shown_left, status, served_at, lease_expires_at,
                             finished_at, skip_reason, arm, propensity)
                        VALUES (p_project, candidate, p_rater, side, 'active', p_now,
                                p_now + make_interval(secs => p_lease_seconds), NULL, '',
                                chosen_arm, chosen_propensity)
                        RETURNING n.id, n.pair_id, n.shown_left, false, n.arm, n.propensity;
                    RETURN;
                END IF;"""

_OLD_SIGNATURE = "bigint, bigint, timestamptz, integer, integer, boolean, integer"
_SIGNATURE = f"{_OLD_SIGNATURE}, double precision, double precision, double precision, integer"

CLAIM_SQL = r"""
CREATE FUNCTION pairwise_claim(
    p_project bigint, p_rater bigint, p_now timestamptz, p_lease_seconds integer,
    p_quota integer, p_gold boolean, p_attempts integer,
    -- Uncertainty selection (null: the default order); the arm's draw, uniform on [0, 1); random()'s
    -- seed for the random arm (setseed: -1 to 1); its rejection probes before it walks the candidates.
    p_epsilon double precision, p_draw double precision, p_seed double precision, p_probes integer
) RETURNS TABLE (assignment_id bigint, pair_id bigint, shown_left varchar, already_held boolean,
                 arm varchar, propensity double precision)
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
    wait_until timestamptz;
    by_priority boolean := p_epsilon IS NOT NULL AND NOT p_gold;
    chosen_arm varchar;
    chosen_propensity double precision;
    n_candidates bigint;
    greedy_id bigint;
    id_lo bigint;
    id_hi bigint;
    draw bigint;
    bits bigint;
    attempt integer;
BEGIN
    -- The caller locked the rater's row and looked for their open assignment in the same statement, whose
    -- snapshot may predate the lock (a double click waited for it): look again, in a newer snapshot.
    SELECT a.id INTO open_id FROM annotation_assignment a
     WHERE a.rater_id = p_rater AND a.project_id = p_project AND a.status = 'active';
    IF open_id IS NOT NULL THEN
        RETURN QUERY SELECT a.id, a.pair_id, a.shown_left, true, a.arm, a.propensity
                       FROM annotation_assignment a WHERE a.id = open_id;
        RETURN;
    END IF;
    IF by_priority THEN
        -- |C|, in one snapshot: open pairs, less those served to the rater (all finished: they hold
        -- none open), less those not served to them whose places unexpired leases fill.
        SELECT (SELECT COALESCE(sum(c.open_pairs), 0) FROM annotation_projectcounter c
                 WHERE c.project_id = p_project)
             - (SELECT COALESCE(sum(r.finished), 0) FROM annotation_raterprogress r
                 WHERE r.rater_id = p_rater AND r.project_id = p_project)
             - (SELECT count(*) FROM annotation_pair p
                 WHERE p.id IN (SELECT h.pair_id FROM annotation_assignment h
                                 WHERE h.project_id = p_project AND h.status = 'active'
                                   AND h.lease_expires_at > p_now)
                   AND p.gold IS NULL AND p.judgment_count < p_quota + p.extra_judgments
                   AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                                   WHERE x.pair_id = p.id AND x.rater_id = p_rater)
                   AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                           WHERE h.pair_id = p.id AND h.status = 'active'
                                             AND h.lease_expires_at > p_now)
                       >= p_quota + p.extra_judgments)
          INTO n_candidates;
        IF p_draw < p_epsilon AND n_candidates > 0 THEN
            -- The random arm. The greedy choice first, read without locks: a draw that hits it logs its
            -- probability, (1 - eps) + eps / |C|.
            PERFORM setseed(p_seed);
            FOR level IN REVERSE p_quota .. 0 LOOP
                IF level = p_quota THEN
                    __GREEDY_RAISED__
                ELSE
                    __GREEDY_LEVEL__
                END IF;
                EXIT WHEN greedy_id IS NOT NULL;
            END LOOP;
            -- The project's id range: two probes of pair_project_id, (project, id). Written as row
            -- comparisons ordered by both columns, which only that index serves: "min(id) WHERE
            -- project_id = $1" may be planned as a walk of the primary key from the table's first pair
            -- (the planner expects the project's pairs anywhere), which reads every pair imported before
            -- the project's first one.
            SELECT p.id INTO id_lo FROM annotation_pair p
             WHERE (p.project_id, p.id) > (p_project, 0)
             ORDER BY p.project_id, p.id LIMIT 1;
            SELECT p.id INTO id_hi FROM annotation_pair p
             WHERE (p.project_id, p.id) < (p_project + 1, 0)
             ORDER BY p.project_id DESC, p.id DESC LIMIT 1;
            chosen_arm := 'random';
            FOR attempt IN 1 .. p_probes + p_attempts LOOP
                -- (A range of 2^52 ids or more cannot be drawn from exactly: straight to the walk.)
                IF attempt <= p_probes AND id_hi - id_lo < 4503599627370495 THEN
                    -- Rejection: an id uniform on the range, kept if it is a candidate we can lock.
                    __UNIFORM_ID__
                    draw := id_lo + draw;
                    SELECT p.id INTO candidate FROM annotation_pair p
                     WHERE p.id = draw
                       AND __CANDIDATE__
                     FOR UPDATE OF p SKIP LOCKED;
                ELSE
                    -- The range was mostly other pairs: a uniform offset into the candidates, enumerated
                    -- along the indexes (raised ones, then the others level by level), then locked.
                    __UNIFORM_OFFSET__
                    SELECT c.id INTO candidate FROM (
                        (SELECT p.id FROM annotation_pair p
                          WHERE p.extra_judgments > 0 AND __CANDIDATE__
                          ORDER BY p.judgment_count, p.id)
                        UNION ALL
                        (SELECT p.id FROM annotation_pair p
                          WHERE p.extra_judgments = 0 AND p.judgment_count < p_quota AND __CANDIDATE__
                          ORDER BY p.judgment_count, p.priority DESC NULLS LAST, p.id)
                    ) AS c OFFSET draw LIMIT 1;
                    IF candidate IS NOT NULL THEN
                        SELECT p.id INTO candidate FROM annotation_pair p WHERE p.id = candidate
                           FOR UPDATE OF p SKIP LOCKED;
                    END IF;
                END IF;
                CONTINUE WHEN candidate IS NULL;
                chosen_propensity := LEAST(1.0, p_epsilon / n_candidates
                                       + CASE WHEN candidate = greedy_id THEN 1 - p_epsilon ELSE 0 END);
                __TAKE__
            END LOOP;
            -- Every draw was held or filled by another request at that instant: the greedy arm.
        END IF;
        chosen_arm := 'uncertainty';
        -- GREATEST: a place freed by a request that committed after the count may make a candidate of a
        -- pair |C| did not count (see the migration's note).
        chosen_propensity := LEAST(1.0, (1 - p_epsilon) + p_epsilon / GREATEST(n_candidates, 1));
    END IF;
    -- Two passes at most: the second after waiting for a pair the first passed over (see below).
    FOR pass IN 1 .. 2 LOOP
        tried := '{}';
        -- Regular pairs one judgment_count level at a time, fullest first: each probe walks the
        -- (project, judgment_count, id) index in order (under uncertainty selection (project,
        -- judgment_count, priority, id)) and stops at the first free pair. Gold pairs (few, exempt from the
        -- quota) in one pass. Level p_quota stands for the raised pairs, probed first.
        FOR level IN REVERSE (CASE WHEN p_gold THEN 0 ELSE p_quota END) .. 0 LOOP
            LOOP
                EXIT WHEN cardinality(tried) >= p_attempts;
                IF NOT p_gold AND level = p_quota THEN
                    -- Pairs a reviewer asked more votes for, with a place free under their own quota
                    -- (walks the partial index pair_raised: few rows).
                    IF by_priority THEN
                        __RAISED_BY_PRIORITY__
                    ELSE
                        __RAISED__
                    END IF;
                ELSIF p_gold THEN
                    SELECT p.id INTO candidate FROM annotation_pair p
                    WHERE p.project_id = p_project AND p.gold IS NOT NULL AND p.id <> ALL (tried)
                      AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                                      WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
                    ORDER BY p.judgment_count DESC, p.id
                    LIMIT 1
                    FOR UPDATE OF p SKIP LOCKED;
                ELSIF by_priority THEN
                    __LEVEL_BY_PRIORITY__
                ELSE
                    -- Row locks: a pair another request is filling is skipped, not waited for (but see
                    -- below when nothing else is free).
                    __LEVEL__
                END IF;
                EXIT WHEN candidate IS NULL;
                __TAKE__
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
          -- Open under the project's quota, or raised (index pair_raised).
          AND (p.judgment_count < p_quota OR p.extra_judgments > 0)
          AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                          WHERE x.pair_id = p.id AND x.rater_id = p_rater OFFSET 0)
          AND p.judgment_count + (SELECT count(*) FROM annotation_assignment h
                                  WHERE h.pair_id = p.id AND h.status = 'active'
                                    AND h.lease_expires_at > p_now)
              < p_quota + p.extra_judgments
        ORDER BY p.judgment_count DESC, p.id
        LIMIT 1;
        EXIT WHEN candidate IS NULL;
__POLLED_WAIT__
    END LOOP;
    RETURN;
END;
$$;
"""
for _name, _text in {
    "__GREEDY_RAISED__": _probe(_RAISED, _RAISED_BY_PRIORITY, into="greedy_id", lock=False),
    "__GREEDY_LEVEL__": _probe(_LEVEL, _LEVEL_BY_PRIORITY, into="greedy_id", lock=False),
    "__UNIFORM_ID__": _uniform("id_hi - id_lo + 1", "draw"),
    "__UNIFORM_OFFSET__": _uniform("n_candidates", "draw"),
    "__RAISED_BY_PRIORITY__": _probe(_RAISED, _RAISED_BY_PRIORITY),
    "__RAISED__": _probe(_RAISED, _RAISED_ORDER),
    "__LEVEL_BY_PRIORITY__": _probe(_LEVEL, _LEVEL_BY_PRIORITY),
    "__LEVEL__": _probe(_LEVEL, _LEVEL_ORDER),
    "__TAKE__": _TAKE,
    "__CANDIDATE__": _CANDIDATE,
    "__POLLED_WAIT__\n": _0011._POLLED_WAIT,  # the wait for a held pair: migration 0011's, unchanged
}.items():
    CLAIM_SQL = CLAIM_SQL.replace(_name, _text)


# The greedy arm's index walk within a level. PostgreSQL only, like the function (SQLite cannot index NULLS
# LAST); not in the model's Meta.indexes for that reason (annotation.models.Pair says so).
INDEX_SQL = (
    "CREATE INDEX pair_uncertainty_order ON annotation_pair"
    " (project_id, judgment_count, priority DESC NULLS LAST, id) WHERE gold IS NULL"
)


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INDEX_SQL)
        schema_editor.execute(f"DROP FUNCTION IF EXISTS pairwise_claim({_OLD_SIGNATURE})")
        schema_editor.execute(CLAIM_SQL)


def restore_function(apps, schema_editor):
    """Back to migration 0011's claim."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS pairwise_claim({_SIGNATURE})")
        schema_editor.execute(_0011.CLAIM_SQL)
        schema_editor.execute("DROP INDEX IF EXISTS pair_uncertainty_order")


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0013_review_put_back"),
    ]

    operations = [
        # The foreign key's own index (project) becomes (project, id): the same lookups, and a project's
        # id range in two probes (the random arm's), which no other index gives in every data layout.
        migrations.AddIndex(
            model_name="pair",
            index=models.Index(fields=["project", "id"], name="pair_project_id"),
        ),
        migrations.AlterField(
            model_name="pair",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="pairs",
                to="annotation.project",
            ),
        ),
        migrations.AddIndex(
            model_name="assignment",
            index=models.Index(
                condition=models.Q(("status", "active")), fields=["project"], name="assignment_active"
            ),
        ),
        migrations.RunPython(create_function, restore_function),
    ]
