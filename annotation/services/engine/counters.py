"""Counters kept by the writes that change them: a project's open, regular and gold pairs and its data
version (annotation.models.ProjectCounter), and each rater's judgments and finished open pairs
(RaterProgress). Progress and the agreement report's cache check read these few rows instead of counting
a project's pairs, so their cost does not grow with the project.

What is counted, as selectors.rater_progress defines it:
- a pair is *open* while it is regular (not gold) and has fewer judgments than its quota,
  judgments_per_pair plus the extra judgments a reviewer asked for (open_sql and pair_open below, the one
  definition);
- a rater has *finished* an open pair when their assignment on it is judged, skipped or expired.

Every write that changes one of these calls a function here, inside its own transaction, while it holds
the row locks of the pairs it changes (the engine's lock order: rater, pair, assignment), so that two
writers never count the same change from different snapshots:
- judgments (the engine's write statement carries JudgmentCounters' CTEs), skips and expirations;
- pairs imported (pairs_added), pairs whose openness changes (gold, quota raise, judgments imported,
  deleted): the change made inside `with pairs_counted(...)`, which counts them before and after;
- anything else the agreement report reads (a corrected judgment): project_data_changed.
A change of judgments_per_pair recounts the project (counters_recount), as does the repair command.

The quota: every statement that writes the counters and depends on whether a pair is open (a judgment's,
a skip's, an expiry's) reads judgments_per_pair itself (_OPEN, on the project's row), not the project the
request read earlier; pairs_counted, whose counts come before its write, locks the counter tables first. A
statement takes its tables' locks before its snapshot, and the recount holds the counter tables EXCLUSIVE
from its count to the commit of the quota change, so a write counted under the old quota commits before
the recount counts, and one that waits for the recount sees the new quota; a transaction's later
statements, its locks held, see the quota its first did. (A judgment
that decided with the quota it had read closed a pair at quota 2 after the recount at quota 3 had counted
it open; an expiry, a removed rater's place, a gold change drifted the same way.)

Deadlocks: a write that takes several RaterProgress rows takes them in one INSERT ... ORDER BY rater_id
(ON CONFLICT DO UPDATE), and takes its ProjectCounter row after them; the project's row is the writer's
own shard (rater id modulo COUNTER_SHARDS), so raters do not queue on one hot row. A judgment that closes
a pair holds its finishers' rows until its transaction ends, and a judgment with "next" goes on to claim
a pair, whose wait for a pair another request holds therefore polls instead of queueing (migration 0011).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from annotation.models import AssignmentStatus, Pair, Project

# Rows per project in annotation_projectcounter: more than the concurrent raters of a busy project, so
# two writers rarely share one.
COUNTER_SHARDS = 16
FINISHED = (AssignmentStatus.JUDGED.value, AssignmentStatus.SKIPPED.value, AssignmentStatus.EXPIRED.value)
_FINISHED_SQL = "(" + ", ".join(f"'{status}'" for status in FINISHED) + ")"


def open_sql(pair: str, quota: str) -> str:
    """The condition that a pair (table alias `pair`) is open under the project's quota `quota` (an SQL
    expression), raised by the pair's extra_judgments."""
    return f"({pair}.gold IS NULL AND {pair}.judgment_count < {quota} + {pair}.extra_judgments)"


# Whether the pair `p` is open under the quota in force, for a statement that writes the counters and
# joins the pair's project (_PAIR_AND_QUOTA, on an assignment `a`): see the module's note.
_OPEN = open_sql("p", "pr.judgments_per_pair")
_PAIR_AND_QUOTA = (
    "JOIN annotation_pair p ON p.id = a.pair_id JOIN annotation_project pr ON pr.id = p.project_id"
)


def pair_quota(project: Project, pair: Pair) -> int:
    """How many judgments a regular pair is served for: the project's judgments_per_pair, plus what a
    reviewer asked for on it (annotation.services.review.pair_quota_raise)."""
    return project.judgments_per_pair + pair.extra_judgments


def pair_open(pair: Any, project: Project) -> bool:
    """open_sql in Python, for a pair (gold, judgment_count, extra_judgments) read under its row lock."""
    return pair.gold is None and pair.judgment_count < pair_quota(project, pair)


def shard_of(writer_id: int | None) -> int:
    """The ProjectCounter row a writer updates: its rater's, or 0 for imports and the admin."""
    return (writer_id or 0) % COUNTER_SHARDS


def _progress_insert(rows_sql: str) -> str:
    """The statement adding the rows (rater_id, project_id, done, finished) of `rows_sql` to RaterProgress,
    in rater order (see the module's note on deadlocks)."""
    return (
        "INSERT INTO annotation_raterprogress AS rp (rater_id, project_id, done, finished)"
        f" SELECT rater_id, project_id, done, finished FROM ({rows_sql}) counted_rows WHERE true"
        " ORDER BY rater_id, project_id ON CONFLICT (rater_id, project_id)"
        " DO UPDATE SET done = rp.done + excluded.done, finished = rp.finished + excluded.finished"
    )


def _progress_cte(name: str, rows_sql: str) -> str:
    """_progress_insert as a CTE (PostgreSQL) that a later part of its statement can wait for."""
    return f"{name} AS ({_progress_insert(rows_sql)} RETURNING 1)"


def _counter_insert(after: str | None, open_pairs: str = "%s") -> str:
    """The statement adding (project_id, shard, open, regular, gold, version) to a ProjectCounter row,
    after the CTE `after` has taken its RaterProgress rows (the scalar subquery runs it to the end
    first); `open_pairs` is a parameter or an SQL expression."""
    wait = f" + 0 * (SELECT count(*) FROM {after})" if after else ""
    return (
        "INSERT INTO annotation_projectcounter AS c"
        " (project_id, shard, open_pairs, regular_pairs, gold_pairs, version)"
        f" SELECT %s, %s, {open_pairs}{wait}, %s, %s, %s"
        " ON CONFLICT (project_id, shard) DO UPDATE SET open_pairs = c.open_pairs + excluded.open_pairs,"
        " regular_pairs = c.regular_pairs + excluded.regular_pairs,"
        " gold_pairs = c.gold_pairs + excluded.gold_pairs, version = c.version + excluded.version"
    )


def _ids_in(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """The condition that `column` is one of `ids`, with its parameters."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(ids)]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


@dataclass(frozen=True)
class _Counted:
    gold: str | None
    judgment_count: int
    extra_judgments: int


def _open_before_after(pair: str, quota: str) -> str:
    """Whether a pair (alias `pair`) is open before and after one more judgment, under `quota`."""
    return f"{open_sql(pair, quota)} AS open_before, {open_sql(pair, f'{quota} - 1')} AS open_after"


@dataclass(frozen=True)
class JudgmentCounters:
    """What one judgment changes: the rater's judgments, and their finished open pairs if the pair stays
    open; if the judgment closes the pair, the project loses an open pair and each of its finishers one.
    `pair` (gold, judgment_count, extra_judgments) and `expired` (the assignment expired before: its
    rater's finished open pair was counted then) are as locked before the write."""

    project: Project
    rater_id: int
    pair: Any
    expired: bool

    def ctes(self) -> tuple[list[str], list[Any]]:
        """CTEs for the judgment's write statement (PostgreSQL), with their parameters: the pair's
        openness before and after, the rater's row and, when the pair closes, its other finishers' rows,
        then the rater's counter shard. The quota is read by this statement, not the caller's project:
        the statement has taken its counter tables' locks before its snapshot, so a quota change's
        recount (which holds them from its count until its commit) either counts this judgment or
        committed the new quota before it (see the module's note)."""
        judged = (
            f"judged AS (SELECT {_open_before_after('p', 'pr.judgments_per_pair')} FROM annotation_pair p"
            " JOIN annotation_project pr ON pr.id = p.project_id WHERE p.id = %s)"
        )
        rows = (
            "SELECT %s AS rater_id, %s AS project_id, 1 AS done,"
            " open_after::int - (open_before AND %s)::int AS finished FROM judged"
            " UNION ALL SELECT f.rater_id, %s, 0, -1 FROM judged, annotation_assignment f"
            " WHERE open_before AND NOT open_after"
            f" AND f.pair_id = %s AND f.rater_id <> %s AND f.status IN {_FINISHED_SQL}"
        )
        params: list[Any] = [self.pair.pk, self.rater_id, self.project.pk, self.expired]
        params += [self.project.pk, self.pair.pk, self.rater_id]
        counter = _counter_insert(
            "progress", open_pairs="-(SELECT (open_before AND NOT open_after)::int FROM judged)"
        )
        counter_params = [self.project.pk, shard_of(self.rater_id), 0, 0, 1]
        return (
            [judged, _progress_cte("progress", rows), f"counted_project AS ({counter})"],
            [*params, *counter_params],
        )

    def run_separately(self) -> None:
        """The same writes as separate statements (SQLite, whose IMMEDIATE transactions serialise: the
        project read with the assignment holds the quota)."""
        open_before = pair_open(self.pair, self.project)
        open_after = open_before and pair_open(
            _Counted(self.pair.gold, self.pair.judgment_count + 1, self.pair.extra_judgments), self.project
        )
        project_id = self.project.pk
        finished = int(open_after) - int(open_before and self.expired)
        progress_add(project_id=project_id, rows=[(self.rater_id, 1, finished)])
        closes = open_before and not open_after
        if closes:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT rater_id FROM annotation_assignment"
                    f" WHERE pair_id = %s AND rater_id <> %s AND status IN {_FINISHED_SQL}",
                    [self.pair.pk, self.rater_id],
                )
                others = [row[0] for row in cursor.fetchall()]
            progress_add(project_id=project_id, rows=[(rater, 0, -1) for rater in others])
        _counter_add(project_id, shard_of(self.rater_id), open_pairs=-1 if closes else 0)


def finished_cte(*, project_id: int, rater_id: int, pair_id: int) -> tuple[str, list[Any]]:
    """A CTE counting one more finished open pair for a rater if the pair is open (a skip of an active
    assignment), for a statement of the caller's. Like JudgmentCounters.ctes, the statement reads the
    quota itself."""
    rows = (
        "SELECT %s AS rater_id, %s AS project_id, 0 AS done, 1 AS finished FROM annotation_pair p"
        f" JOIN annotation_project pr ON pr.id = p.project_id WHERE p.id = %s AND {_OPEN}"
    )
    return _progress_cte("progress", rows), [rater_id, project_id, pair_id]


def assignments_expired(*, assignment_ids: Sequence[int]) -> None:
    """Count the assignments just closed as expired (under their pairs' row locks): each on an open pair
    is one more finished open pair for its rater. One statement, its rows in rater order, which reads the
    quota itself (see the module's note)."""
    if not assignment_ids:
        return
    where, ids = _ids_in("a.id", assignment_ids)
    rows = (
        "SELECT a.rater_id, a.project_id, 0 AS done, count(*) AS finished FROM annotation_assignment a"
        f" {_PAIR_AND_QUOTA} WHERE {where} AND {_OPEN} GROUP BY a.rater_id, a.project_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(_progress_insert(rows), ids)


def pairs_added(*, project_id: int, regular: int, gold: int) -> None:
    """New pairs (no judgments yet: every regular one is open), and a new data version."""
    if regular or gold:
        _counter_add(project_id, shard_of(None), open_pairs=regular, regular=regular, gold=gold)


@contextmanager
def pairs_counted(
    *, project: Project, pair_ids: Sequence[int], writer_id: int | None = None
) -> Iterator[list[tuple[int, int, int]]]:
    """Around a change of these pairs' gold, quota or judgments (or their deletion), made by the block
    while it holds their row locks: what they counted before (each open pair once in the open pairs and
    once for every rater who finished it, each pair in the regular or gold pairs) is taken out and what
    they count after is put in, with the (rater_id, done, finished) rows the block adds to the list it is
    given (the judgments it imports or deletes), in one write at the end; the data version goes up.

    The counter tables are locked (ROW EXCLUSIVE, which other writers share) before the first count, so no
    quota change's recount runs between the two counts (see the module's note); the raters' rows and then
    the counter row are taken once, at the end, in order, as every writer takes them (a count-out written
    before the change held the counter row while the count-in waited for raters' rows: a deadlock with
    a judgment)."""
    ids = sorted(set(pair_ids))
    counted: list[tuple[int, int, int]] = []
    if ids and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "LOCK TABLE annotation_raterprogress, annotation_projectcounter IN ROW EXCLUSIVE MODE"
            )
    before = _pairs_count(ids)
    yield counted
    after = _pairs_count(ids)
    finished = [(rater, 0, n) for rater, n in after.finishers.items()]
    finished += [(rater, 0, -n) for rater, n in before.finishers.items()]
    progress_add(project_id=project.pk, rows=[*finished, *counted])
    _counter_add(
        project.pk,
        shard_of(writer_id),
        open_pairs=after.open - before.open,
        regular=after.regular - before.regular,
        gold=after.gold - before.gold,
    )


@dataclass(frozen=True)
class _Count:
    finishers: dict[int, int]  # rater id: the open pairs among these that they finished
    open: int
    regular: int
    gold: int


def _pairs_count(ids: Sequence[int]) -> _Count:
    """What these pairs count for now, under the quota in force (read by the statements)."""
    if not ids:
        return _Count({}, 0, 0, 0)
    where, params = _ids_in("p.id", ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.rater_id, count(*) FROM annotation_assignment a {_PAIR_AND_QUOTA}"
            f" WHERE {where} AND {_OPEN} AND a.status IN {_FINISHED_SQL} GROUP BY a.rater_id",
            params,
        )
        finishers = dict(cursor.fetchall())
        cursor.execute(
            f"SELECT COALESCE(sum(CASE WHEN {_OPEN} THEN 1 ELSE 0 END), 0), count(*) - count(p.gold),"
            f" count(p.gold) FROM annotation_pair p JOIN annotation_project pr ON pr.id = p.project_id"
            f" WHERE {where}",
            params,
        )
        open_pairs, regular, gold = cursor.fetchone()
    return _Count(finishers, int(open_pairs), int(regular), int(gold))


def project_data_changed(*, project_id: int, writer_id: int | None = None) -> None:
    """A new data version for the project: call after any write the agreement report reads that no other
    function here counted (a judgment corrected in place, say)."""
    _counter_add(project_id, shard_of(writer_id))


def progress_add(*, project_id: int, rows: Iterable[tuple[int, int, int]]) -> None:
    """Add (rater_id, done, finished) to the raters' rows, in rater order: one row per rater, the rows
    given for the same rater summed (an upsert may change a row once per statement)."""
    summed: dict[int, tuple[int, int]] = {}
    for rater, done, finished in rows:
        old_done, old_finished = summed.get(rater, (0, 0))
        summed[rater] = (old_done + done, old_finished + finished)
    rows = sorted((rater, done, finished) for rater, (done, finished) in summed.items() if done or finished)
    if not rows:
        return
    values = " UNION ALL ".join(
        ["SELECT %s AS rater_id, %s AS project_id, %s AS done, %s AS finished"] * len(rows)
    )
    params = [value for rater, done, finished in rows for value in (rater, project_id, done, finished)]
    with connection.cursor() as cursor:
        cursor.execute(_progress_insert(values), params)


def _counter_add(
    project_id: int, shard: int, *, open_pairs: int = 0, regular: int = 0, gold: int = 0
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_counter_insert(None), [project_id, shard, open_pairs, regular, gold, 1])


# The counts from the rows, as the counters should hold them.
_RECOUNT_PROGRESS = f"""
SELECT rater_id, %s AS project_id, sum(done) AS done, sum(finished) AS finished FROM (
    SELECT rater_id, count(*) AS done, 0 AS finished FROM annotation_judgment
     WHERE project_id = %s GROUP BY rater_id
    UNION ALL
    SELECT a.rater_id, 0, count(*) FROM annotation_assignment a JOIN annotation_pair p ON p.id = a.pair_id
     WHERE a.project_id = %s AND {open_sql("p", "%s")} AND a.status IN {_FINISHED_SQL} GROUP BY a.rater_id
) counts GROUP BY rater_id
"""
_RECOUNT_PAIRS = f"""
SELECT COALESCE(sum(CASE WHEN {open_sql("p", "%s")} THEN 1 ELSE 0 END), 0),
       count(*) - count(gold), count(gold)
  FROM annotation_pair p WHERE p.project_id = %s
"""


@dataclass(frozen=True)
class Recount:
    project: str
    repaired: bool  # whether the stored counters differed from the recount


def counters_recount(*, project: Project) -> Recount:
    """Count the project's counters again from its rows and store them; the data version goes up.

    On PostgreSQL the two counter tables are locked (EXCLUSIVE: reads go on, every counter write in any
    project waits) while the project is counted, so that no write lands between the count and the store;
    at five million pairs that is a few seconds. A quota change and the repair command run it."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE annotation_raterprogress, annotation_projectcounter IN EXCLUSIVE MODE")
        quota = project.judgments_per_pair
        cursor.execute(
            "SELECT COALESCE(sum(open_pairs), 0), COALESCE(sum(regular_pairs), 0),"
            " COALESCE(sum(gold_pairs), 0), COALESCE(sum(version), 0)"
            " FROM annotation_projectcounter WHERE project_id = %s",
            [project.pk],
        )
        *stored_pairs, version = cursor.fetchone()
        cursor.execute(
            "SELECT rater_id, done, finished FROM annotation_raterprogress"
            " WHERE project_id = %s AND (done <> 0 OR finished <> 0)",
            [project.pk],
        )
        stored_progress = {(r, d, f) for r, d, f in cursor.fetchall()}
        cursor.execute(_RECOUNT_PAIRS, [quota, project.pk])
        counted_pairs = list(cursor.fetchone())
        cursor.execute(_RECOUNT_PROGRESS, [project.pk, project.pk, project.pk, quota])
        recounted = cursor.fetchall()  # stored as read: the count runs once under the lock
        counted_progress = {(r, d, f) for r, _, d, f in recounted if d or f}
        cursor.execute("DELETE FROM annotation_projectcounter WHERE project_id = %s", [project.pk])
        cursor.execute("DELETE FROM annotation_raterprogress WHERE project_id = %s", [project.pk])
        cursor.execute(
            "INSERT INTO annotation_projectcounter"
            " (project_id, shard, open_pairs, regular_pairs, gold_pairs, version)"
            " VALUES (%s, 0, %s, %s, %s, %s)",
            [project.pk, *counted_pairs, version + 1],
        )
        if recounted:
            cursor.executemany(
                "INSERT INTO annotation_raterprogress (rater_id, project_id, done, finished)"
                " VALUES (%s, %s, %s, %s)",
                recounted,
            )
    repaired = [int(v) for v in stored_pairs] != [int(v) for v in counted_pairs] or {
        tuple(map(int, row)) for row in stored_progress
    } != {tuple(map(int, row)) for row in counted_progress}
    return Recount(project=project.slug, repaired=repaired)
