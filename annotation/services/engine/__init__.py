"""The assignment engine: next, judgment and skip, and the closing of stale leases.

The engine's guarantees (at most judgments_per_pair raters per pair, no pair twice to one rater, one
open assignment per rater and project) hold under any number of concurrent requests and server
processes: every place on a pair is taken or given back while that pair's row is locked, candidates are
picked with SELECT ... FOR UPDATE SKIP LOCKED so raters never queue behind each other (except, briefly,
when the only pairs with a place free for the rater are held by other requests: see pairwise_claim), and
the unique constraints in annotation.models back the rest. On SQLite (the quickstart) transactions are
IMMEDIATE, which serialises them instead.

The rating path is kept to few statements (tests/annotation/test_query_counts.py lists them): on
PostgreSQL a new pair is claimed by pairwise_claim() (migration 0005, redefined by 0009, 0011 and 0014:
uncertainty selection's greedy and random arms, claim.py), which runs the claim's loop inside the database
in one call; the caller's assignment is read with its rows
locked in one statement; and judgment_record_and_next and assignment_skip_and_next answer and serve the
next pair in one transaction.

Its modules: rules (the policy: places, leases, sides, gold, what a judgment must satisfy), claim (the
claim of a new pair and its SQL), serving (assignment_next: what a rater is served, with their progress)
writes (judgment and skip, with or without the next pair, and leases_expire) and corrections (a rater's
judgment corrected within the project's window, the earlier answer kept as a revision).
"""

from __future__ import annotations

from .corrections import correctable_until, judgment_correct
from .serving import Served, assignment_next
from .writes import (
    assignment_skip,
    assignment_skip_and_next,
    judgment_record,
    judgment_record_and_next,
    leases_expire,
)

__all__ = [
    "Served",
    "assignment_next",
    "assignment_skip",
    "assignment_skip_and_next",
    "correctable_until",
    "judgment_correct",
    "judgment_record",
    "judgment_record_and_next",
    "leases_expire",
]
