"""After a bulk write: the planner's statistics brought up to date for the tables written, before the
import answers. Autovacuum may be a minute away (or off); until then the planner knows nothing of the new
rows, and a claim in a project of a million new pairs took over ten seconds (issue 22, bench/scale)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

# Rows written by one import from which its tables are analysed: ANALYZE samples at most 30,000 rows
# (default_statistics_target 100), a fraction of a second even on a large table; below this an import
# changes too little of a large table's statistics to matter, and a small table plans well without.
ANALYZE_MIN_ROWS = 5000


def tables_analyze(*, tables: Sequence[str], rows: int) -> bool:
    """ANALYZE the tables when `rows` (written to them) reach ANALYZE_MIN_ROWS; PostgreSQL only (SQLite's
    planner keeps no such statistics until asked). Returns whether it ran."""
    if rows < ANALYZE_MIN_ROWS or connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    return True
