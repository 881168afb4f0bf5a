"""Training-run and scoring endpoints (API.md): staff only; views validate, call a service or selector,
serialize."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from web.api import ApiView, GenericApiView, IdCursorPagination, IsStaff, error_response
from web.errors import Conflict, NotFound

from .. import scoring, selectors, services
from ..models import TrainingRun
from . import serializers as s


class RunsPagination(IdCursorPagination):
    ordering = "-id"  # newest first


def _run(run_id: int) -> TrainingRun:
    run = selectors.training_runs().filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No training run {run_id}.")
    return run


def _detail(run: TrainingRun) -> dict[str, Any]:
    return s.TrainingRunSerializer(selectors.training_runs().get(pk=run.pk)).data


class TrainingRunsView(mixins.ListModelMixin, GenericApiView):
    permission_classes = [IsStaff]
    serializer_class = s.TrainingRunListSerializer
    pagination_class = RunsPagination

    def get_queryset(self) -> Any:
        query = s.TrainingRunListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        slug = query.validated_data.get("project")
        project = None
        if slug is not None:
            project = annotation_selectors.project_get_visible(slug=slug, user=self.request.user)
        # The list shows neither the curves nor the config: not read from the database either.
        return selectors.training_runs(project=project).defer("history", "epochs", "config")

    @extend_schema(parameters=[s.TrainingRunListQuerySerializer], summary="Training runs, newest first")
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        request=s.TrainingRunCreateSerializer,
        responses={201: s.TrainingRunSerializer, 400: error_response("Bad settings, one error per field")},
        summary="Queue a training run of the project's judgments",
    )
    def post(self, request: Request) -> Response:
        body = s.TrainingRunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        project = annotation_selectors.project_get_visible(slug=values.pop("project"), user=request.user)
        run = services.training_run_create(project=project, config=values, created_by=request.user)
        return Response(_detail(run), status=201)


class TrainingRunView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(responses={200: s.TrainingRunSerializer}, summary="A training run, with its curves")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(s.TrainingRunSerializer(_run(run_id)).data)


class TrainingRunCancelView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        request=None,
        responses={200: s.TrainingRunSerializer, 409: error_response("The run already finished")},
        summary="Cancel a queued run, or stop a running one at its next step",
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = services.training_run_cancel(run=_run(run_id))
        return Response(_detail(run))


class TrainingRunActivateView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        request=s.ActivateRequestSerializer,
        responses={
            200: s.ActivationSerializer,
            409: error_response(
                "Not a succeeded run (not_ready); no held-out evaluation and no force_reason "
                "(no_evaluation); or its saved model failed the load-and-rescore check"
            ),
        },
        summary="Make the run's model the project's scoring model (after checking the saved model)",
    )
    def post(self, request: Request, run_id: int) -> Response:
        body = s.ActivateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        active = services.training_run_activate(
            run=_run(run_id), activated_by=request.user, force_reason=body.validated_data["force_reason"]
        )
        return Response(s.ActivationSerializer(active).data)


class ScoreView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        request=s.ScoreRequestSerializer,
        responses={
            200: s.ScoreResponseSerializer,
            409: error_response(
                "The project has no active model (no_active_model), or its directory is missing or "
                "does not load (model_unavailable)"
            ),
            413: OpenApiResponse(
                description="More responses than the limit (64), a text over 100,000 characters, or more "
                "than 1,000,000 characters in all"
            ),
        },
        summary="Raw rewards of responses to a prompt, from the project's active model",
    )
    def post(self, request: Request) -> Response:
        body = s.ScoreRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        project = annotation_selectors.project_get_visible(slug=data["project"], user=request.user)
        run_id, scores = scoring.score(project=project, prompt=data["prompt"], responses=data["responses"])
        return Response({"model": run_id, "scores": scores})


# The review queue (API.md: Review queue): staff only.


class ReviewPagination(IdCursorPagination):
    # Lowest probability for the human majority first; the id settles equal ones (DRF takes a tuple; the
    # base class names one field).
    ordering = ("probability", "id")  # type: ignore[assignment]
    page_size = 50
    max_page_size = 500
    model: int | None = None

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data["model"] = self.model  # the run whose scores rank the page
        return response


def _active_run(project: Any) -> int:
    run_id = selectors.active_run_id(project=project)
    if run_id is None:
        raise Conflict(
            f"Project {project.slug!r} has no active model: activate a succeeded training run first.",
            code="no_active_model",
        )
    return run_id


class ReviewQueueView(GenericApiView):
    permission_classes = [IsStaff]
    serializer_class = s.ReviewPairSerializer
    pagination_class = ReviewPagination

    @extend_schema(
        responses={200: s.ReviewPairSerializer(many=True), 409: error_response("No active model")},
        summary="The review queue: judged pairs where the active model doubts the human majority most",
    )
    def get(self, request: Request, slug: str) -> Response:
        project = annotation_selectors.project_get_visible(slug=slug, user=request.user)
        run_id = _active_run(project)
        paginator = self.paginator
        assert isinstance(paginator, ReviewPagination)
        paginator.model = run_id
        page = paginator.paginate_queryset(
            selectors.review_queue(project=project, run_id=run_id), request, view=self
        )
        judgments = selectors.review_votes(pair.pk for pair in page or [])
        data = s.ReviewPairSerializer(page, many=True, context={"judgments": judgments}).data
        return paginator.get_paginated_response(data)


class ReviewActionView(ApiView):
    permission_classes = [IsStaff]
    body_limit = 64 * 1024  # an action and its reason

    @extend_schema(
        request=s.ReviewActionRequestSerializer,
        responses={
            201: s.ReviewActionSerializer,
            400: error_response("Bad fields, a missing reason, or more extra judgments than a pair takes"),
            404: error_response("No such pair in the project"),
            409: error_response("A gold pair, or a pair already left out"),
        },
        summary="Act on a pair of the review queue: ask for more votes, leave it out of training, keep it",
    )
    def post(self, request: Request, slug: str, pair_id: int) -> Response:
        body = s.ReviewActionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        project = annotation_selectors.project_get_visible(slug=slug, user=request.user)
        action = annotation_services.pair_review_act(
            project=project,
            pair_id=pair_id,
            action=data["action"],
            by=request.user,
            reason=data["reason"],
            k=data.get("k"),
        )
        return Response(s.ReviewActionSerializer(action).data, status=201)


class ReviewScoringView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        responses={200: s.PairScoringSerializer, 404: error_response("No scoring yet")},
        summary="The project's latest scoring of its judged pairs, with its progress",
    )
    def get(self, request: Request, slug: str) -> Response:
        project = annotation_selectors.project_get_visible(slug=slug, user=request.user)
        scoring_row = selectors.latest_scoring(project=project)
        if scoring_row is None:
            raise NotFound(f"Project {slug!r} has not been scored yet.")
        return Response(s.PairScoringSerializer(scoring_row).data)

    @extend_schema(
        request=None,
        responses={202: s.PairScoringSerializer, 409: error_response("No active model")},
        summary="Score the project's judged pairs with its active model (on a training worker)",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = annotation_selectors.project_get_visible(slug=slug, user=request.user)
        job = services.pair_scoring_start(project=project, created_by=request.user)
        return Response(s.PairScoringSerializer(job).data, status=202)
