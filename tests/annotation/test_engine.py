"""The assignment engine's guarantees, through the services, on PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, AssignmentStatus, Judgment, Pair, Rater
from tests.annotation.counters import assert_counters_equal_recount
from web.errors import Conflict, Forbidden, Invalid, NotFound


def _judge_everything(project, user, choice="left"):
    """Ask for pairs and judge them until nothing is left; returns the pair ids judged."""
    judged = []
    while (served := services.assignment_next(project=project, user=user)) is not None:
        services.judgment_record(assignment_id=served.assignment.pk, user=user, choice=choice)
        judged.append(served.assignment.pair_id)
    return judged


def _judge_everything_in_one_round_trip(project, user, choice="left"):
    """The same with judgment and next in one request."""
    judged = []
    served = services.assignment_next(project=project, user=user)
    while served is not None:
        _, served_next = services.judgment_record_and_next(
            assignment_id=served.assignment.pk, user=user, choice=choice
        )
        judged.append(served.assignment.pair_id)
        served = served_next
    return judged


def _select(project, selection):
    """Put the project under `selection`; under uncertainty, as a scored model leaves it: priorities on
    most pairs (some ties, some unscored) and a random share of 0.3."""
    if selection == "uncertainty":
        rng = random.Random(project.pk)
        for pair_id in Pair.objects.filter(project=project).values_list("pk", flat=True):
            priority = rng.choice([None, 0.5, rng.random(), rng.random()])
            Pair.objects.filter(pk=pair_id).update(priority=priority)
        project.selection, project.selection_epsilon = "uncertainty", 0.3
        project.priorities_at = timezone.now()
        project.save(update_fields=["selection", "selection_epsilon", "priorities_at"])


def _assert_arms_logged(project, selection):
    """Every regular assignment carries its arm and a probability under uncertainty selection; none does
    under the default order."""
    rows = list(
        Assignment.objects.filter(project=project, pair__gold__isnull=True).values_list("arm", "propensity")
    )
    if selection == "uncertainty":
        assert {arm for arm, _ in rows} <= {"uncertainty", "random"} and all(0 < p <= 1 for _, p in rows), (
            rows
        )
    else:
        assert set(rows) == {(None, None)}


def in_parallel(call, argument_lists):
    """Run call(*arguments) for each list at once, each in a thread with its own database connection,
    released together by a barrier. Returns each call's result, or the exception it raised."""
    start = threading.Barrier(len(argument_lists))
    outcomes: list = [None] * len(argument_lists)

    def run(index, arguments):
        try:
            start.wait()
            outcomes[index] = call(*arguments)
        except Exception as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(argument_lists)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return outcomes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("selection", "judge"),
    [
        ("random", _judge_everything),
        ("uncertainty", _judge_everything),
        ("uncertainty", _judge_everything_in_one_round_trip),
    ],
    ids=["default order", "uncertainty", "uncertainty, one round trip"],
)
def test_concurrent_raters_fill_every_pair_exactly_to_quota(
    make_project, make_pairs, make_rater, selection, judge
):
    project = make_project(judgments_per_pair=3)
    make_pairs(project, 40)
    _select(project, selection)
    users = [make_rater(project) for _ in range(24)]
    judged_by = in_parallel(judge, [(project, user) for user in users])
    assert all(isinstance(judged, list) for judged in judged_by), judged_by

    per_pair = Counter(Judgment.objects.values_list("pair_id", flat=True))
    assert set(per_pair) == set(Pair.objects.values_list("pk", flat=True))
    assert set(per_pair.values()) == {3}
    raters_per_pair = Counter(Judgment.objects.values_list("pair_id", "rater_id"))
    assert max(raters_per_pair.values()) == 1
    # Nothing lost: every judgment a thread was told about is in the table, and every pair's counter agrees.
    assert sum(len(pairs) for pairs in judged_by) == Judgment.objects.count() == 120
    assert all(pair.judgment_count == 3 for pair in Pair.objects.all())
    assert not Assignment.objects.filter(status=AssignmentStatus.ACTIVE).exists()
    # Sides balanced on every pair: response A shown left to one or two of its three raters.
    sides = Counter(Judgment.objects.values_list("pair_id", "shown_left"))
    assert all(abs(sides[(pair, "a")] - sides[(pair, "b")]) == 1 for pair in per_pair), sides
    _assert_arms_logged(project, selection)
    assert_counters_equal_recount(project)


@pytest.mark.django_db(transaction=True)
def test_one_rater_double_clicking_gets_one_assignment(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 5)
    user = make_rater(project)
    got = in_parallel(lambda: services.assignment_next(project=project, user=user).assignment.pk, [()] * 8)
    assert len(set(got)) == 1 and isinstance(got[0], int), got
    assert Assignment.objects.count() == 1


def _hold_pair_row(pair_id, *, seconds, locked):
    """Another request's claim (or judgment) in progress: the pair's row locked for a while, in a thread
    with its own connection. `locked` is set once the lock is held."""

    def hold():
        try:
            with transaction.atomic():
                list(Pair.objects.select_for_update().filter(pk=pair_id).values_list("pk"))
                locked.set()
                time.sleep(seconds)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("raters", [2, 3])
@pytest.mark.parametrize("selection", ["random", "uncertainty"])
def test_raters_racing_for_the_places_of_one_pair_are_all_served(
    make_project, make_pairs, make_rater, raters, selection
):
    """K raters asking at the same moment for a pair with K places: SKIP LOCKED passes over the pair while
    one of them claims it, and the others must wait for that claim, not come away with nothing (under
    uncertainty selection too, whose random arm refuses a held pair and leaves it to the greedy arm's
    wait)."""
    for trial in range(8):
        project = make_project(judgments_per_pair=raters)
        make_pairs(project, 1)
        _select(project, selection)
        users = [make_rater(project) for _ in range(raters)]
        served = in_parallel(
            lambda user, project=project: services.assignment_next(project=project, user=user),
            [(user,) for user in users],
        )
        assert all(isinstance(outcome, services.Served) for outcome in served), (trial, served)
        assert Assignment.objects.filter(project=project, status=AssignmentStatus.ACTIVE).count() == raters
        _assert_arms_logged(project, selection)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("selection", ["random", "uncertainty"])
def test_a_claim_waits_for_the_request_holding_the_only_free_pair(
    make_project, make_pairs, make_rater, selection
):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 1)
    _select(project, selection)
    pair = Pair.objects.get(project=project)
    user = make_rater(project)
    holder = _hold_pair_row(pair.pk, seconds=0.2, locked=threading.Event())
    try:
        served = services.assignment_next(project=project, user=user)
    finally:
        holder.join()
    assert served is not None and served.assignment.pair_id == pair.pk


@pytest.mark.django_db(transaction=True)
def test_a_pair_held_too_long_by_another_request_means_ask_again_in_a_second(
    make_project, make_pairs, make_rater
):
    """The claim's wait for a locked pair is short; after it the rater is told to ask again in a second,
    neither that they are done nor to wait for a lease."""
    from annotation import selectors

    project = make_project(judgments_per_pair=2, lease_seconds=900)
    make_pairs(project, 1)
    pair = Pair.objects.get(project=project)
    other, user = make_rater(project), make_rater(project)
    services.assignment_next(project=project, user=other)  # one place held by a lease, one free
    holder = _hold_pair_row(pair.pk, seconds=3, locked=threading.Event())
    try:
        assert services.assignment_next(project=project, user=user) is None
        rater = Rater.objects.get(user=user)
        assert selectors.rater_wait_seconds(project=project, rater=rater) == 1
    finally:
        holder.join()
    assert services.assignment_next(project=project, user=user).assignment.pair_id == pair.pk


@pytest.mark.django_db(transaction=True)
def test_raters_judging_each_others_next_pair_at_once_neither_fails(make_project, make_pairs, make_rater):
    """Each judgment with next holds its own pair while it claims the other's: a wait each way, which the
    claim must give up rather than fail the judgment; whoever is served nothing is told to ask again in a
    second (a place is free for them), never that they are done."""
    from annotation import selectors

    for trial in range(3):
        project = make_project(judgments_per_pair=2)
        make_pairs(project, 2)
        first, second, third = make_rater(project), make_rater(project), make_rater(project)
        held_first = services.assignment_next(project=project, user=first).assignment
        # The first pair's second place, so the second rater gets the second pair.
        filler = services.assignment_next(project=project, user=third).assignment
        held_second = services.assignment_next(project=project, user=second).assignment
        services.assignment_skip(assignment_id=filler.pk, user=third)  # the first pair's place comes free
        assert held_first.pair_id == filler.pair_id != held_second.pair_id
        outcomes = in_parallel(
            lambda user, assignment: services.judgment_record_and_next(
                assignment_id=assignment.pk, user=user, choice="left"
            ),
            [(first, held_first), (second, held_second)],
        )
        assert all(isinstance(outcome, tuple) for outcome in outcomes), (trial, outcomes)
        assert Judgment.objects.filter(project=project).count() == 2
        for user, (_, following) in zip((first, second), outcomes, strict=True):
            if following is None:
                rater = Rater.objects.get(user=user)
                assert selectors.rater_wait_seconds(project=project, rater=rater) == 1, trial


@pytest.mark.django_db(transaction=True)
def test_a_claim_waiting_for_a_pair_never_fails_the_judgment_of_the_rater_holding_it(
    make_project, make_pairs, make_rater
):
    """X's judgment closes pair Q, which Y finished, so X's transaction holds Y's progress row; X's claim
    then wants pair P, whose row Y's judgment holds while it goes on to write Y's progress row. Each
    request waits for the other: the claim must be the side that gives way, however slow it was to get
    there. Y's deadlock check is made to run first (50 ms; PostgreSQL's default is 1 s), as it does when
    a busy machine slows the claim (seen in CI with 24 raters)."""
    project = make_project(judgments_per_pair=2, lease_seconds=900)
    make_pairs(project, 2)
    x, y = make_rater(project), make_rater(project)
    first = services.assignment_next(project=project, user=y).assignment
    _, y_next = services.judgment_record_and_next(assignment_id=first.pk, user=y, choice="left")
    q, p = first.pair_id, y_next.assignment.pair_id
    x_held = services.assignment_next(project=project, user=x).assignment
    assert x_held.pair_id == q != p
    y_rater = Rater.objects.get(user=y)
    locked = threading.Event()
    outcomes: dict[str, object] = {}

    def y_judges_p():
        try:
            with transaction.atomic():
                list(Pair.objects.select_for_update().filter(pk=p).values_list("pk"))
                locked.set()
                with connection.cursor() as cursor:
                    # Wait until X's claim is waiting for P (queued for its lock, or polling it); the
                    # view is read once per transaction unless its snapshot is cleared.
                    for _ in range(500):
                        cursor.execute("SELECT pg_stat_clear_snapshot()")
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active'"
                            " AND wait_event IN ('transactionid', 'tuple', 'PgSleep')",
                            ["%pairwise_claim(%"],
                        )
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.01)
                    else:
                        raise AssertionError("X's claim never waited for pair P")
                    cursor.execute("SET LOCAL deadlock_timeout = '50ms'")
                outcomes["y"] = services.judgment_record(
                    assignment_id=y_next.assignment.pk, user=y, choice="right"
                )
        except Exception as exc:
            outcomes["y"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=y_judges_p)
    thread.start()
    try:
        assert locked.wait(10)
        _, following = services.judgment_record_and_next(assignment_id=x_held.pk, user=x, choice="left")
    finally:
        thread.join(30)
    assert isinstance(outcomes["y"], Judgment), outcomes["y"]
    assert following is None  # P was held the whole time: ask again in a second
    assert Judgment.objects.filter(project=project).count() == 3
    assert Pair.objects.get(pk=p).judgment_count == 1
    assert_counters_equal_recount(project)
    assert y_rater.progress.get(project=project).done == 2


def test_fewer_raters_than_the_quota_judge_each_pair_once_each(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=3)
    make_pairs(project, 4)
    users = [make_rater(project) for _ in range(2)]
    for user in users:
        assert len(_judge_everything(project, user)) == 4
    assert set(Counter(Judgment.objects.values_list("pair_id", flat=True)).values()) == {2}


def test_pairs_nearest_completion_come_first_then_oldest(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=3)
    make_pairs(project, 3)
    oldest, middle, newest = Pair.objects.order_by("id")
    first = make_rater(project)
    a = services.assignment_next(project=project, user=first).assignment
    assert a.pair == oldest
    services.judgment_record(assignment_id=a.pk, user=first, choice="left")
    # Give the newest pair a judgment too, by a rater who skips their way to it.
    second = make_rater(project)
    services.assignment_skip(
        assignment_id=services.assignment_next(project=project, user=second).assignment.pk, user=second
    )
    services.assignment_skip(
        assignment_id=services.assignment_next(project=project, user=second).assignment.pk, user=second
    )
    b = services.assignment_next(project=project, user=second).assignment
    assert b.pair == newest
    services.judgment_record(assignment_id=b.pk, user=second, choice="left")
    # Both oldest and newest have one judgment; the oldest of them comes first, the untouched one last.
    third = make_rater(project)
    order = []
    while (served := services.assignment_next(project=project, user=third)) is not None:
        order.append(served.assignment.pair)
        services.judgment_record(assignment_id=served.assignment.pk, user=third, choice="right")
    assert order == [oldest, newest, middle]


def test_what_is_served_comes_with_the_raters_progress_claimed_held_and_after_a_judgment(
    make_project, make_pairs, make_rater
):
    """The claim reads the progress in its own statement, a held assignment after the transaction: both
    are selectors.rater_progress's answer."""
    from annotation import selectors

    project = make_project(judgments_per_pair=2)
    make_pairs(project, 3)
    user = make_rater(project)
    claimed = services.assignment_next(project=project, user=user)
    rater = claimed.assignment.rater
    assert (
        claimed.progress
        == selectors.rater_progress(project=project, rater=rater)
        == {"done": 0, "available": 3}
    )
    held = services.assignment_next(project=project, user=user)
    assert held.assignment.pk == claimed.assignment.pk and held.progress == claimed.progress
    _, following = services.judgment_record_and_next(
        assignment_id=held.assignment.pk, user=user, choice="left"
    )
    assert (
        following.progress
        == selectors.rater_progress(project=project, rater=rater)
        == {"done": 1, "available": 2}
    )
    _, after_skip = services.assignment_skip_and_next(assignment_id=following.assignment.pk, user=user)
    assert (
        after_skip.progress
        == selectors.rater_progress(project=project, rater=rater)
        == {"done": 1, "available": 1}
    )


def test_asking_again_returns_the_same_unexpired_assignment(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 3)
    user = make_rater(project)
    first = services.assignment_next(project=project, user=user).assignment
    assert services.assignment_next(project=project, user=user).assignment.pk == first.pk
    assert Assignment.objects.filter(rater__user=user).count() == 1


def test_expired_lease_returns_the_place_to_the_pool(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, lease_seconds=60)
    make_pairs(project, 1)
    slow, quick = make_rater(project), make_rater(project)
    held = services.assignment_next(project=project, user=slow).assignment
    assert services.assignment_next(project=project, user=quick) is None
    later = timezone.now() + timedelta(seconds=61)
    reclaimed = services.assignment_next(project=project, user=quick, now=later)
    assert reclaimed is not None and reclaimed.assignment.pair_id == held.pair_id


def test_late_judgment_is_refused_once_the_place_went_to_someone_else(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, lease_seconds=60)
    make_pairs(project, 1)
    slow, quick = make_rater(project), make_rater(project)
    held = services.assignment_next(project=project, user=slow).assignment
    later = timezone.now() + timedelta(seconds=61)
    services.assignment_next(project=project, user=quick, now=later)
    with pytest.raises(Conflict) as refused:
        services.judgment_record(assignment_id=held.pk, user=slow, choice="left", now=later)
    assert refused.value.code == "assignment_expired"
    assert not Judgment.objects.exists()


def test_late_judgment_is_accepted_while_the_place_is_still_free(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, lease_seconds=60)
    make_pairs(project, 1)
    slow = make_rater(project)
    held = services.assignment_next(project=project, user=slow).assignment
    later = timezone.now() + timedelta(seconds=600)
    judgment = services.judgment_record(assignment_id=held.pk, user=slow, choice="tie", now=later)
    assert judgment.time_on_task_ms == pytest.approx(600_000, abs=1000)


def test_rater_back_after_expiry_gets_the_same_pair_if_still_free(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, lease_seconds=60)
    make_pairs(project, 2)
    user = make_rater(project)
    first = services.assignment_next(project=project, user=user).assignment
    again = services.assignment_next(
        project=project, user=user, now=timezone.now() + timedelta(seconds=120)
    ).assignment
    assert again.pk == first.pk
    assert again.lease_expires_at > timezone.now() + timedelta(seconds=100)


def test_leases_expire_task_closes_stale_assignments(make_project, make_pairs, make_rater):
    project = make_project(lease_seconds=60)
    make_pairs(project, 2)
    user = make_rater(project)
    services.assignment_next(project=project, user=user)
    assert services.leases_expire(now=timezone.now()) == 0
    assert services.leases_expire(now=timezone.now() + timedelta(seconds=61)) == 1
    assert Assignment.objects.get().status == AssignmentStatus.EXPIRED


def test_retried_judgment_makes_one_judgment(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 2)
    user = make_rater(project)
    assignment = services.assignment_next(project=project, user=user).assignment
    first = services.judgment_record(assignment_id=assignment.pk, user=user, choice="left")
    with pytest.raises(Conflict) as retry:
        services.judgment_record(assignment_id=assignment.pk, user=user, choice="left")
    assert retry.value.code == "already_judged"
    assert retry.value.extra["judgment"] == first.pk
    assert Judgment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_judgment_make_one(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 1)
    user = make_rater(project)
    assignment = services.assignment_next(project=project, user=user).assignment

    def submit():
        return services.judgment_record(assignment_id=assignment.pk, user=user, choice="right")

    outcomes = in_parallel(submit, [()] * 6)
    codes = sorted(
        outcome.code if isinstance(outcome, Conflict) else type(outcome).__name__ for outcome in outcomes
    )
    assert codes == ["Judgment"] + ["already_judged"] * 5
    assert Judgment.objects.count() == 1
    assert Pair.objects.get().judgment_count == 1


def test_sides_are_balanced_across_the_raters_of_a_pair(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 10)
    for user in (make_rater(project), make_rater(project)):
        _judge_everything(project, user)
    sides_per_pair: dict[int, list[str]] = {}
    for pair_id, side in Assignment.objects.values_list("pair_id", "shown_left"):
        sides_per_pair.setdefault(pair_id, []).append(side)
    assert len(sides_per_pair) == 10
    assert all(sorted(sides) == ["a", "b"] for sides in sides_per_pair.values())
    # And the first rater of each pair does not always see A on the left.
    assert Counter(Assignment.objects.order_by("id").values_list("shown_left", flat=True)[:10]) != {"a": 10}


def test_left_and_right_are_stored_as_a_and_b(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 1)
    choices = []
    for _ in range(2):
        user = make_rater(project)
        assignment = services.assignment_next(project=project, user=user).assignment
        judgment = services.judgment_record(assignment_id=assignment.pk, user=user, choice="left")
        choices.append((assignment.shown_left, judgment.choice))
    assert sorted(choices) == [("a", "a"), ("b", "b")]


def test_skipped_pair_never_comes_back_and_frees_its_place(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 2)
    skipper, other = make_rater(project), make_rater(project)
    skipped = services.assignment_next(project=project, user=skipper).assignment
    services.assignment_skip(assignment_id=skipped.pk, user=skipper, reason="not my language")
    assert Assignment.objects.get(pk=skipped.pk).skip_reason == "not my language"
    served_to_skipper = [
        served.assignment.pair_id for served in [services.assignment_next(project=project, user=skipper)]
    ]
    assert skipped.pair_id not in served_to_skipper
    assert services.assignment_next(project=project, user=other).assignment.pair_id == skipped.pair_id


def test_gold_pairs_are_served_at_the_gold_fraction(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1, gold_fraction=0.25)
    make_pairs(project, 30)
    make_pairs(project, 10, gold="a", prefix="gold")
    user = make_rater(project)
    served = []
    for _ in range(20):
        assignment = services.assignment_next(project=project, user=user).assignment
        served.append(assignment.pair.gold is not None)
        services.judgment_record(assignment_id=assignment.pk, user=user, choice="left")
    assert sum(served) == 5
    # Gold pairs check every rater, so they are not held to the quota.
    other = make_rater(project)
    gold_for_other = 0
    for _ in range(20):
        assignment = services.assignment_next(project=project, user=other).assignment
        gold_for_other += assignment.pair.gold is not None
        services.judgment_record(assignment_id=assignment.pk, user=other, choice="left")
    assert gold_for_other == 5


def test_no_gold_when_the_fraction_is_zero(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 3)
    make_pairs(project, 3, gold="b", prefix="gold")
    user = make_rater(project)
    served = _judge_everything(project, user)
    assert len(served) == 3
    assert not Pair.objects.filter(pk__in=served, gold__isnull=False).exists()


def test_only_raters_of_the_project_get_pairs(make_project, make_pairs, make_rater, make_user):
    project, other_project = make_project(), make_project()
    make_pairs(project, 2)
    outsider = make_rater(other_project)
    with pytest.raises(Forbidden):
        services.assignment_next(project=project, user=outsider)


def test_rater_in_the_project_group_may_rate(make_project, make_pairs, make_user):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="raters")
    project = make_project(rater_group=group)
    make_pairs(project, 1)
    user = make_user()
    user.groups.add(group)
    assert services.assignment_next(project=project, user=user) is not None


def test_someone_elses_assignment_is_not_found(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 2)
    owner, intruder = make_rater(project), make_rater(project)
    assignment = services.assignment_next(project=project, user=owner).assignment
    with pytest.raises(NotFound):
        services.judgment_record(assignment_id=assignment.pk, user=intruder, choice="left")
    with pytest.raises(NotFound):
        services.assignment_skip(assignment_id=assignment.pk, user=intruder)


def test_removed_rater_releases_the_place_and_keeps_judgments(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 2)
    leaver, stayer = make_rater(project), make_rater(project)
    done = services.assignment_next(project=project, user=leaver).assignment
    services.judgment_record(assignment_id=done.pk, user=leaver, choice="left")
    held = services.assignment_next(project=project, user=leaver).assignment
    services.project_rater_remove(project=project, username=leaver.username)
    assert Judgment.objects.filter(rater__user=leaver).count() == 1
    assert services.assignment_next(project=project, user=stayer).assignment.pair_id == held.pair_id
    with pytest.raises(Forbidden):
        services.judgment_record(assignment_id=held.pk, user=leaver, choice="left")


@pytest.mark.parametrize(
    ("settings", "payload", "field"),
    [
        ({"allow_tie": False}, {"choice": "tie"}, "choice"),
        ({"strength_levels": 3}, {"choice": "left"}, "strength"),
        ({"strength_levels": 3}, {"choice": "left", "strength": 4}, "strength"),
        ({"strength_levels": 3}, {"choice": "tie", "strength": 2}, "strength"),
        ({}, {"choice": "left", "strength": 1}, "strength"),
        ({"rationale": "required"}, {"choice": "left", "rationale": "  "}, "rationale"),
        ({"rationale": "off"}, {"choice": "left", "rationale": "because"}, "rationale"),
    ],
)
def test_bad_judgments_are_refused_and_nothing_is_stored(
    make_project, make_pairs, make_rater, settings, payload, field
):
    project = make_project(**settings)
    make_pairs(project, 1)
    user = make_rater(project)
    assignment = services.assignment_next(project=project, user=user).assignment
    with pytest.raises(Invalid) as refused:
        services.judgment_record(assignment_id=assignment.pk, user=user, **payload)
    assert [error["field"] for error in refused.value.errors] == [field]
    assert not Judgment.objects.exists()
    assert Assignment.objects.get().status == AssignmentStatus.ACTIVE


def test_strength_and_rationale_are_kept(make_project, make_pairs, make_rater):
    project = make_project(strength_levels=3, rationale="required")
    make_pairs(project, 1)
    user = make_rater(project)
    assignment = services.assignment_next(project=project, user=user).assignment
    judgment = services.judgment_record(
        assignment_id=assignment.pk,
        user=user,
        choice="right",
        strength=2,
        rationale="clearer",
        client_time_ms=4100,
    )
    judgment.refresh_from_db()
    assert (judgment.strength, judgment.rationale, judgment.client_time_ms) == (2, "clearer", 4100)
    assert judgment.choice == ("b" if assignment.shown_left == "a" else "a")


# The database holds the invariants even when the services are bypassed.


def _bypass(callable_):
    with pytest.raises(IntegrityError), transaction.atomic():
        callable_()


def test_database_refuses_a_second_judgment_by_the_same_rater(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 1)
    user = make_rater(project)
    assignment = services.assignment_next(project=project, user=user).assignment
    judgment = services.judgment_record(assignment_id=assignment.pk, user=user, choice="left")
    _bypass(
        lambda: Judgment.objects.create(
            project=project,
            pair=judgment.pair,
            rater=judgment.rater,
            choice="b",
            created_at=timezone.now(),
            pair_longer=-1,
        )
    )


def test_database_refuses_a_pair_served_twice_to_one_rater(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 1)
    user = make_rater(project)
    first = services.assignment_next(project=project, user=user).assignment
    services.assignment_skip(assignment_id=first.pk, user=user)
    now = timezone.now()
    _bypass(
        lambda: Assignment.objects.create(
            project=project,
            pair=first.pair,
            rater=first.rater,
            shown_left="a",
            served_at=now,
            lease_expires_at=now + timedelta(minutes=5),
        )
    )


def test_database_refuses_two_open_assignments_for_one_rater(make_project, make_pairs, make_rater):
    project = make_project()
    make_pairs(project, 2)
    user = make_rater(project)
    first = services.assignment_next(project=project, user=user).assignment
    other_pair = Pair.objects.exclude(pk=first.pair_id).get()
    now = timezone.now()
    _bypass(
        lambda: Assignment.objects.create(
            project=project,
            pair=other_pair,
            rater=first.rater,
            shown_left="a",
            served_at=now,
            lease_expires_at=now + timedelta(minutes=5),
        )
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"choice": "up"},
        {"choice": "tie", "strength": 2},
        {"choice": "a", "strength": 0},
        {"choice": "a", "shown_left": "x"},
    ],
)
def test_database_refuses_invalid_judgment_values(make_project, make_pairs, make_user, fields):
    project = make_project()
    make_pairs(project, 1)
    rater = Rater.objects.create(user=make_user())
    pair = Pair.objects.get()
    _bypass(
        lambda: Judgment.objects.create(
            project=project, pair=pair, rater=rater, created_at=timezone.now(), pair_longer=-1, **fields
        )
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"response_b": "same"},
        {"prompt": ""},
        {"gold": "x"},
    ],
)
def test_database_refuses_invalid_pairs(make_project, fields):
    project = make_project()
    values = {
        "prompt": "p",
        "response_a": "same",
        "response_b": "other",
        "content_sha256": "x" * 64,
        **fields,
    }
    _bypass(lambda: Pair.objects.create(project=project, **values))


def test_database_refuses_a_duplicate_external_id(make_project, make_pairs):
    project = make_project()
    make_pairs(project, 1)
    _bypass(
        lambda: Pair.objects.create(
            project=project, external_id="p0", prompt="p", response_a="a", response_b="b", content_sha256="x"
        )
    )


def test_database_refuses_out_of_range_project_settings(make_project):
    for fields in (
        {"judgments_per_pair": 0},
        {"gold_fraction": 1.5},
        {"lease_seconds": 1},
        {"rationale": "maybe"},
    ):
        _bypass(lambda fields=fields: make_project(**fields))


def test_judgment_with_next_serves_the_pair_the_rater_already_holds(make_project, make_pairs, make_rater):
    """A late judgment on a closed assignment, from a rater who meanwhile holds another pair: the next
    assignment is the one they hold, never a second open one."""
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 3)
    slow, other = make_rater(project), make_rater(project)
    late = services.assignment_next(
        project=project, user=slow, now=timezone.now() - timedelta(hours=1)
    ).assignment
    taken = services.assignment_next(project=project, user=other).assignment
    assert taken.pair_id == late.pair_id
    held = services.assignment_next(
        project=project, user=slow
    ).assignment  # late's place is gone: closed, a new pair
    assert held.pair_id != late.pair_id
    services.assignment_skip(assignment_id=taken.pk, user=other)  # the place comes free again
    judgment, following = services.judgment_record_and_next(assignment_id=late.pk, user=slow, choice="left")
    assert judgment.pair_id == late.pair_id
    assert following is not None and following.assignment.pk == held.pk
    assert Assignment.objects.filter(rater__user=slow, status=AssignmentStatus.ACTIVE).count() == 1


def test_a_refused_judgment_with_next_serves_nothing(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 2)
    user = make_rater(project)
    assignment = services.assignment_next(project=project, user=user).assignment
    services.judgment_record(assignment_id=assignment.pk, user=user, choice="left")
    with pytest.raises(Conflict):
        services.judgment_record_and_next(assignment_id=assignment.pk, user=user, choice="left")
    assert not Assignment.objects.filter(status=AssignmentStatus.ACTIVE).exists()
    with pytest.raises(Invalid):
        services.judgment_record_and_next(assignment_id=assignment.pk, user=user, choice="left", strength=3)
    assert not Assignment.objects.filter(status=AssignmentStatus.ACTIVE).exists()


def test_judging_checks_who_may_rate_each_way_in(make_project, make_pairs, make_rater, make_user):
    """The judgment's read checks the rating rule in SQL: members, the project's group and staff may
    judge; whoever was taken out of the project may not."""
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="judges")
    project = make_project(judgments_per_pair=4, rater_group=group)
    make_pairs(project, 3)
    member, in_group, staff = make_rater(project), make_user(), make_user(staff=True)
    in_group.groups.add(group)
    held = {
        user: services.assignment_next(project=project, user=user).assignment
        for user in (member, in_group, staff)
    }
    services.judgment_record(assignment_id=held[member].pk, user=member, choice="left")
    services.judgment_record_and_next(assignment_id=held[in_group].pk, user=in_group, choice="left")
    services.judgment_record(assignment_id=held[staff].pk, user=staff, choice="tie")
    assert Judgment.objects.count() == 3
    following = services.assignment_next(project=project, user=in_group).assignment
    in_group.groups.remove(group)
    with pytest.raises(Forbidden):
        services.judgment_record_and_next(assignment_id=following.pk, user=in_group, choice="left")
    assert Judgment.objects.count() == 3
