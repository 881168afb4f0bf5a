"""The counters behind progress and the agreement report's cache check (annotation.services.engine.counters)
stay equal to a recount of the rows through every write that changes them, concurrent ones included, and
the recount repairs counters damaged by hand."""

from __future__ import annotations

import io
import random
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from annotation import services
from annotation.models import (
    MIN_LEASE_SECONDS,
    Assignment,
    AssignmentStatus,
    Pair,
    ProjectCounter,
    RaterProgress,
)
from annotation.selectors import rater_progress
from annotation.services.bulk import ANALYZE_MIN_ROWS, tables_analyze
from annotation.services.engine.counters import COUNTER_SHARDS
from tests.annotation.counters import assert_counters_equal_recount, by_rows, counted
from tests.annotation.test_engine import in_parallel
from web.errors import Conflict


def _rate(project, user, seed, steps):
    """A rater's session: judgments, judgments with next, skips with next, a lease let run out (judged
    late or left to expire), in an order drawn from `seed`."""
    draw = random.Random(seed)
    served = services.assignment_next(project=project, user=user)
    for _ in range(steps):
        if served is None:
            return
        assignment = served.assignment.pk
        action = draw.choice(["judge", "judge_next", "skip_next", "lapse"])
        try:
            if action == "judge":
                services.judgment_record(assignment_id=assignment, user=user, choice="left")
                served = services.assignment_next(project=project, user=user)
            elif action == "judge_next":
                _, served = services.judgment_record_and_next(
                    assignment_id=assignment, user=user, choice="right"
                )
            elif action == "skip_next":
                _, served = services.assignment_skip_and_next(assignment_id=assignment, user=user)
            else:
                # Back after the lease: the pair again if its place is free, else it expires and another.
                later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
                served = services.assignment_next(project=project, user=user, now=later)
        except Conflict as refused:
            # The lease ran out (leases_expire) and the place went to another rater: the next pair.
            assert refused.code == "assignment_expired", refused
            served = services.assignment_next(project=project, user=user)
    return True


@pytest.mark.django_db(transaction=True)
def test_counters_equal_a_recount_after_concurrent_raters_skips_and_expired_leases(
    make_project, make_pairs, make_rater
):
    project = make_project(judgments_per_pair=3, lease_seconds=10)
    make_pairs(project, 30)
    make_pairs(project, 3, gold="a", prefix="gold")
    users = [make_rater(project) for _ in range(10)]
    left = threading.Semaphore(0)  # released by each rater who is done

    def rate(*args):
        try:
            return _rate(*args)
        finally:
            left.release()

    def expire_leases(_):
        # Until every rater is done (20 calls at once could all come before the first lease on a busy
        # machine), then once more: each rater ends holding a lease.
        expired, done = 0, 0
        while done < len(users):
            expired += services.leases_expire(now=timezone.now() + timedelta(seconds=11))
            done += left.acquire(timeout=0.005)
        return expired + services.leases_expire(now=timezone.now() + timedelta(seconds=11))

    calls = [(project, user, index, 12) for index, user in enumerate(users)]
    outcomes = in_parallel(
        lambda *args: expire_leases(args) if args[0] == "expire" else rate(*args),
        [*calls, ("expire",)],
    )
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert outcomes[-1] > 0  # leases expired while the raters rated (some judged late or skipped since)
    statuses = set(Assignment.objects.values_list("status", flat=True))
    assert {"judged", "skipped"} <= statuses, statuses
    # Pairs left open and pairs closed, so that both kinds of change were counted.
    assert Pair.objects.filter(judgment_count=3).exists()
    assert Pair.objects.filter(gold=None, judgment_count__lt=3).exists()
    assert_counters_equal_recount(project)


@pytest.mark.django_db(transaction=True)
def test_concurrent_raters_spread_over_the_counter_shards(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 20)
    users = [make_rater(project) for _ in range(6)]
    outcomes = in_parallel(_rate, [(project, user, index, 6) for index, user in enumerate(users)])
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert 1 < ProjectCounter.objects.filter(project=project).count() <= COUNTER_SHARDS
    assert_counters_equal_recount(project)


def _judge_until(stop, project, user, seed):
    """A rater judging with next (a skip with next now and then) until `stop` is set or nothing is left."""
    draw = random.Random(seed)
    served = services.assignment_next(project=project, user=user)
    while served is not None and not stop.is_set():
        if draw.random() < 0.1:
            _, served = services.assignment_skip_and_next(assignment_id=served.assignment.pk, user=user)
        else:
            _, served = services.judgment_record_and_next(
                assignment_id=served.assignment.pk, user=user, choice="left"
            )
    return True


def _flip_quota(stop, project, seconds):
    """The quota changed to 2 and back to 3 while the raters judge, again and again, then `stop` set."""
    flips, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        for quota in (2, 3):
            services.project_update(project=project, changes={"judgments_per_pair": quota})
        flips += 1
    stop.set()
    return flips


@pytest.mark.django_db(transaction=True)
def test_counters_equal_a_recount_after_quota_changes_while_raters_judge(
    make_project, make_pairs, make_rater
):
    # A judgment decides whether it closes its pair under the quota; a quota change recounts the project
    # under the new one. A judgment that read the old quota and wrote after the recount drifted the
    # counters (a pair closed at quota 2 counted closed at quota 3): a few rounds, since it is a race.
    for _ in range(4):
        project = make_project(judgments_per_pair=3)
        make_pairs(project, 300)  # more than the raters get through: they judge until the quota stops
        users = [make_rater(project) for _ in range(4)]
        stop = threading.Event()
        outcomes = in_parallel(
            lambda kind, *args: (_flip_quota if kind == "quota" else _judge_until)(*args),
            [
                *[("rate", stop, project, user, index) for index, user in enumerate(users)],
                ("quota", stop, project, 1.5),
            ],
        )
        assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
        assert outcomes[-1] > 1
        # No recount after the raters stopped: the last change (back to 3) was made while they judged.
        assert Pair.objects.filter(project=project, judgment_count__gt=0).exists()
        assert Pair.objects.filter(project=project, judgment_count=0).exists()
        assert_counters_equal_recount(project)


def _lapse_until(stop, project, user, seed):
    """A rater who judges some pairs and comes back after the lease of others: the pair again if its place
    is free, else it expires there (rules.keep_held) and another is served."""
    draw = random.Random(seed)
    while not stop.is_set():
        later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
        served = services.assignment_next(project=project, user=user, now=later)
        if served is None:
            return True
        if draw.random() < 0.5:
            try:
                services.judgment_record(assignment_id=served.assignment.pk, user=user, choice="left")
            except Conflict as refused:
                assert refused.code == "assignment_expired", refused
    return True


def _expire_until(stop, project):
    """leases_expire again and again, as if every lease had run out (the raters' too, who lease from a
    lease's length ahead)."""
    expired = 0
    while not stop.is_set():
        later = timezone.now() + timedelta(seconds=3 * project.lease_seconds)
        expired += services.leases_expire(now=later)
    return expired


def _remove_until(stop, project, user):
    """A rater who takes a pair, is removed from the project (the pair's place expires) and added again."""
    removed = 0
    while not stop.is_set():
        if services.assignment_next(project=project, user=user) is None:
            return removed
        services.project_rater_remove(project=project, username=user.username)
        services.project_raters_add(project=project, usernames=[user.username])
        removed += 1
    return removed


def _gold_until(stop, project):
    """The admin's form making judged pairs gold and regular again (services.pair_save)."""
    changed = 0
    while not stop.is_set():
        for pair in Pair.objects.filter(project=project, judgment_count__gte=2).order_by("?")[:5]:
            pair.gold = None if pair.gold else "a"
            services.pair_save(pair=pair, adding=False)
            changed += 1
    return changed


_WRITERS = {"expire": _expire_until, "remove": _remove_until, "gold": _gold_until}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("writer", sorted(_WRITERS))
def test_counters_equal_a_recount_after_quota_changes_while_other_writers_count(
    make_project, make_pairs, make_rater, writer
):
    # Every counter writer decides whether a pair is open: leases expired (leases_expire, a lapsed lease
    # taken over in assignment_next, a removed rater's) and pairs counted out and in again (gold). One
    # that read the old quota and wrote after a quota change's recount drifted the counters.
    for _ in range(3):
        project = make_project(judgments_per_pair=3, lease_seconds=MIN_LEASE_SECONDS)
        make_pairs(project, 200)
        raters = [make_rater(project) for _ in range(3)]
        other = make_rater(project)
        stop = threading.Event()
        calls: list[tuple[Any, ...]] = [
            *[(_lapse_until, stop, project, user, index) for index, user in enumerate(raters)],
            (_WRITERS[writer], stop, project, *([other] if writer == "remove" else [])),
            (_flip_quota, stop, project, 1.5),
        ]
        outcomes = in_parallel(lambda run, *args: run(*args), calls)
        assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
        assert outcomes[-2] > 0 and outcomes[-1] > 1, outcomes
        assert_counters_equal_recount(project)


def test_counters_follow_imports_quota_changes_gold_and_removed_raters(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2, lease_seconds=60)
    make_pairs(project, 6)
    first, second = make_rater(project), make_rater(project)
    for user in (first, second):
        served = services.assignment_next(project=project, user=user)
        services.judgment_record(assignment_id=served.assignment.pk, user=user, choice="left")
    served = services.assignment_next(project=project, user=first)
    services.assignment_skip(assignment_id=served.assignment.pk, user=first)
    services.assignment_next(project=project, user=second)  # held when second is removed below
    assert_counters_equal_recount(project)

    make_pairs(project, 4, prefix="more")
    make_pairs(project, 2, gold="b", prefix="gold")
    assert_counters_equal_recount(project)

    # Imported judgments fill some pairs past the quota.
    items = [{"pair": f"p{i}", "rater": f"outside-{k}", "choice": "a"} for i in range(3) for k in range(2)]
    services.judgments_import(project=project, items=items)
    assert_counters_equal_recount(project)

    services.project_update(project=project, changes={"judgments_per_pair": 4})
    assert_counters_equal_recount(project)
    services.project_update(project=project, changes={"judgments_per_pair": 1})
    assert_counters_equal_recount(project)
    services.project_update(project=project, changes={"judgments_per_pair": 3})

    services.project_rater_remove(project=project, username=second.username)
    assert Assignment.objects.filter(status=AssignmentStatus.EXPIRED).exists()
    assert_counters_equal_recount(project)

    # The admin's pair form: a skipped pair made gold, then deleted.
    skipped = Pair.objects.get(assignments__status=AssignmentStatus.SKIPPED)
    skipped.gold = "a"
    services.pair_save(pair=skipped, adding=False)
    assert_counters_equal_recount(project)
    services.pairs_delete(pairs=[skipped])
    assert_counters_equal_recount(project)

    later = timezone.now() + timedelta(seconds=61)
    served = services.assignment_next(project=project, user=first)
    assert services.leases_expire(now=later) == 1
    assert_counters_equal_recount(project)
    # A judgment after the lease expired, while its place is still free.
    services.judgment_record(assignment_id=served.assignment.pk, user=first, choice="tie", now=later)
    assert_counters_equal_recount(project)


def test_damaged_counters_are_repaired_by_the_recount(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 5)
    user = make_rater(project)
    served = services.assignment_next(project=project, user=user)
    services.judgment_record(assignment_id=served.assignment.pk, user=user, choice="left")
    rater = served.assignment.rater_id
    right = rater_progress(project=project, rater=rater)
    assert right == {"done": 1, "available": 4}

    RaterProgress.objects.filter(project=project).update(done=7, finished=-3)
    ProjectCounter.objects.filter(project=project).update(open_pairs=1000)
    ProjectCounter.objects.create(project=project, shard=COUNTER_SHARDS - 1, open_pairs=5)
    assert rater_progress(project=project, rater=rater) != right
    assert counted(project) != by_rows(project)

    out = io.StringIO()
    call_command("recount_progress", project.slug, stdout=out)
    assert out.getvalue().strip() == f"{project.slug}: repaired"
    assert rater_progress(project=project, rater=rater) == right
    out = io.StringIO()
    call_command("recount_progress", stdout=out)
    assert out.getvalue().strip() == f"{project.slug}: ok"
    assert_counters_equal_recount(project)


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


def test_the_admin_action_recounts_the_counters(make_project, make_pairs, admin_user, client):
    project = make_project()
    make_pairs(project, 3)
    ProjectCounter.objects.filter(project=project).update(open_pairs=0)
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    response = client.post(
        "/admin/annotation/project/",
        {"action": "recount_counters", "_selected_action": [project.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [f"{project.slug}: counters repaired."]
    assert counted(project)["pairs"]["open"] == 3


def _analyzed(table: str) -> tuple[Any, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_analyze, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s", [table]
        )
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_a_large_import_brings_the_planners_statistics_up_to_date(make_project, make_pairs, staff):
    """Before it answers, through the API as through the service: pg_stat_user_tables says so (statistics
    reach it within a moment of the commit, hence the short wait)."""
    project = make_project("big", judgments_per_pair=1)
    make_pairs(project, 10, prefix="small")  # under ANALYZE_MIN_ROWS: no ANALYZE
    before = {table: _analyzed(table)[0] for table in ("annotation_pair", "annotation_judgment")}

    def analyzed_since(table: str) -> bool:
        deadline = time.monotonic() + 5
        while True:
            last = _analyzed(table)[0]
            if (
                last is not None and (before[table] is None or last > before[table])
            ) or time.monotonic() > deadline:
                return last is not None and (before[table] is None or last > before[table])
            time.sleep(0.1)

    items = [
        {"external_id": f"x{i}", "prompt": "P", "response_a": "a", "response_b": f"b{i}"}
        for i in range(ANALYZE_MIN_ROWS)
    ]
    response = staff.post("/api/v1/projects/big/pairs/", items, format="json")
    assert response.status_code in (200, 201), response.content
    assert analyzed_since("annotation_pair")
    assert _analyzed("annotation_pair")[1] < ANALYZE_MIN_ROWS  # the new rows are in the statistics
    judgments = [{"pair": f"x{i}", "rater": f"r{i % 7}", "choice": "a"} for i in range(ANALYZE_MIN_ROWS)]
    services.judgments_import(project=project, items=judgments)
    assert analyzed_since("annotation_judgment")


def test_small_imports_do_not_analyze(make_project, make_pairs):
    assert not tables_analyze(tables=["annotation_pair"], rows=ANALYZE_MIN_ROWS - 1)


def test_jit_is_off_on_every_connection(db):
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
