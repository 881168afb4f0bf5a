"""pairwise_claim() redefined so that its wait for a pair another request holds polls the pair's lock
(NOWAIT, every few milliseconds, for at most LOCK_WAIT) instead of queueing for it.

Why: the claim that follows a judgment ("next": true) runs in the judgment's transaction, which may hold
other raters' progress rows (a judgment that closes a pair counts it out of every rater who finished it,
annotation.services.engine.counters). When the pair the claim waits for is held by one of those raters,
whose own judgment is about to write their progress row, each request waits for the other. Queued, that
is a deadlock, and PostgreSQL's check (after deadlock_timeout) may fail either side: on a busy machine it
failed the other rater's judgment, not the claim (seen in CI: 24 raters, one round trip each). Polled,
the claim never waits in a lock queue, so no cycle can close through it: the other rater's judgment waits
for this transaction's end, at most LOCK_WAIT later.

Everything else is migration 0009's function, unchanged.
"""

from importlib import import_module

from django.db import migrations

_0009 = import_module("annotation.migrations.0009_pair_review")

# How long a claim waits for the row of a pair another request holds (migrations 0005 and 0009).
LOCK_WAIT = _0009.LOCK_WAIT

_QUEUED_WAIT = """\
        lock_wait := current_setting('lock_timeout');
        BEGIN
            PERFORM set_config('lock_timeout', '%(wait)s', true);
            PERFORM 1 FROM annotation_pair p WHERE p.id = candidate FOR UPDATE;
            PERFORM set_config('lock_timeout', lock_wait, true);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            -- Held too long, or a wait each way (two judgments with next, each holding the pair the
            -- other wants): claim nothing. The savepoint's rollback restores lock_timeout.
            RETURN;
        END;
""" % {"wait": LOCK_WAIT}

_POLLED_WAIT = """\
        -- Polled, never queued (migration 0011): this transaction may hold other raters' progress rows,
        -- which the request holding the pair may be about to write.
        wait_until := clock_timestamp() + interval '%(wait)s';
        LOOP
            BEGIN
                PERFORM 1 FROM annotation_pair p WHERE p.id = candidate FOR UPDATE NOWAIT;
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                -- Held too long: claim nothing.
                IF clock_timestamp() >= wait_until THEN
                    RETURN;
                END IF;
            END;
            PERFORM pg_sleep(0.005);
        END LOOP;
""" % {"wait": LOCK_WAIT}

if _QUEUED_WAIT not in _0009.CLAIM_SQL or "    lock_wait text;\n" not in _0009.CLAIM_SQL:
    raise RuntimeError("migration 0009's pairwise_claim() is not the one this migration rewrites")

CLAIM_SQL = _0009.CLAIM_SQL.replace(_QUEUED_WAIT, _POLLED_WAIT).replace(
    "    lock_wait text;\n", "    wait_until timestamptz;\n"
)


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CLAIM_SQL)


def restore_function(apps, schema_editor):
    """Back to migration 0009's claim."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_0009.CLAIM_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0010_progress_counters"),
    ]

    operations = [
        migrations.RunPython(create_function, restore_function),
    ]
