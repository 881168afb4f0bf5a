"""Training-run and scoring endpoints (API.md): staff only; views validate, call a service or selector,
serialize."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import selectors as annotation_selectors
from web.api import ApiView, GenericApiView, IdCursorPagination, IsStaff, error_response
from web.errors import NotFound

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
