"""REST API views (API.md): each validates with a serializer, calls a service or selector, serializes."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import Throttled
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches, order_by_precedence

from annotation import files, selectors, services
from annotation.models import Pair, Project
from web import login_throttle
from web.api import ApiView, GenericApiView, IdCursorPagination, IsStaff, IsStaffOrReadOnly, error_response
from web.errors import ServiceError

from . import serializers as s
from .parsers import JSONParser


def _project(request: Request, slug: str) -> Project:
    return selectors.project_get_visible(slug=slug, user=request.user)


# Authentication


class TokenView(ApiView):
    # No authentication: a stale token header must not stand in the way of getting a new one.
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    # JSON, or a plain form post (`curl -d username=... -d password=...`).
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=s.TokenRequestSerializer,
        responses={
            200: s.TokenSerializer,
            400: error_response("Missing fields or wrong credentials."),
            429: error_response(
                "Too many failed logins from this address with this username, or from this address; "
                "refused without a look at the password until the Retry-After header's seconds pass."
            ),
        },
        auth=[],
        summary="Exchange a username and password for an API token",
    )
    def post(self, request: Request) -> Response:
        serializer = s.TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request=request._request, **serializer.validated_data)
        if user is None:
            refused = login_throttle.refusal_of(request._request)
            if refused is not None:
                raise Throttled(wait=refused.retry_after, detail=refused.reason)
            raise ServiceError("Unable to log in with these credentials.", code="invalid_credentials")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


# Raters


class RaterCreateView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        request=s.RaterCreateSerializer,
        responses={201: s.RaterSerializer, 400: error_response("Invalid username, email or password.")},
        summary="Create a rater account",
    )
    def post(self, request: Request) -> Response:
        serializer = s.RaterCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.rater_create(**serializer.validated_data)
        return Response(s.RaterSerializer({"id": user.pk, "username": user.get_username()}).data, status=201)


class ProjectRatersView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(responses=s.ProjectRaterSerializer(many=True), summary="The project's raters and progress")
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        return Response(s.ProjectRaterSerializer(selectors.project_raters(project=project), many=True).data)

    @extend_schema(
        request=s.ProjectRatersAddSerializer,
        responses={
            200: s.ProjectRatersAddedSerializer,
            400: error_response("Unknown usernames; none were added."),
        },
        summary="Add raters to the project",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        serializer = s.ProjectRatersAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        added = services.project_raters_add(project=project, usernames=serializer.validated_data["usernames"])
        return Response(s.ProjectRatersAddedSerializer({"added": added}).data)


class ProjectRaterView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        responses={204: None, 404: error_response("Not a rater in this project.")},
        summary="Remove a rater from the project (their judgments stay)",
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        services.project_rater_remove(project=_project(request, slug), username=username)
        return Response(status=204)


# Projects


class ProjectListView(ApiView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(responses=s.ProjectSerializer(many=True), summary="Projects the caller may see")
    def get(self, request: Request) -> Response:
        projects = selectors.projects_visible_to(request.user)
        return Response(s.ProjectSerializer(projects, many=True).data)

    @extend_schema(
        request=s.ProjectSerializer,
        responses={
            201: s.ProjectSerializer,
            400: error_response("Invalid settings or a slug already taken."),
        },
        summary="Create a project",
    )
    def post(self, request: Request) -> Response:
        serializer = s.ProjectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(**serializer.validated_data)
        return Response(s.ProjectSerializer(project).data, status=201)


class ProjectDetailView(ApiView):
    permission_classes = [IsStaffOrReadOnly]

    @extend_schema(
        responses={200: s.ProjectSerializer, 404: error_response("No such project, or not yours to see.")}
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(s.ProjectSerializer(_project(request, slug)).data)

    @extend_schema(
        request=s.ProjectSerializer,
        responses={
            200: s.ProjectSerializer,
            400: error_response("Invalid settings; the slug cannot change."),
        },
        summary="Change a project's settings",
    )
    def patch(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        serializer = s.ProjectSerializer(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {field: value for field, value in serializer.validated_data.items() if field != "slug"}
        project = services.project_update(project=project, changes=changes)
        return Response(s.ProjectSerializer(project).data)


# Pairs

_IMPORT_EXAMPLE = [
    {
        "external_id": "your-id-17",
        "prompt": "What is the capital of France?",
        "response_a": "Paris.",
        "response_b": "Lyon.",
        "model_a": "sft-v2",
        "model_b": "rlhf-v1",
        "metadata": {"source": "eval-set-3"},
    }
]


class _FormatNamesTheData(DefaultContentNegotiation):
    """?format= names the import's data format (pairs, trl, hh-rlhf) here, not a renderer as DRF's
    URL_FORMAT_OVERRIDE would have it (which answers 404 for a format it has no renderer for)."""

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        accepts = self.get_accept_list(request)
        for media_type_set in order_by_precedence(accepts):
            for renderer in renderers:
                for media_type in media_type_set:
                    if media_type_matches(renderer.media_type, media_type):
                        return renderer, renderer.media_type
        return renderers[0], renderers[0].media_type


class PairsView(mixins.ListModelMixin, GenericApiView):
    permission_classes = [IsStaff]
    content_negotiation_class = _FormatNamesTheData
    serializer_class = s.PairSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self) -> QuerySet[Pair]:
        project = _project(self.request, self.kwargs["slug"])
        return Pair.objects.filter(project=project)

    @extend_schema(summary="The project's pairs, with their judgment counts")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": {"type": "object"}},
            "application/x-ndjson": {"type": "string", "description": "One pair object per line."},
        },
        responses={
            201: s.ImportResultSerializer,
            400: error_response(
                'Invalid items: {"detail", "code", "errors": [{"index", "field", "message"}]}.'
            ),
            409: error_response("Another import added the same external_ids at the same time."),
            413: error_response("Too many bytes or items in one request."),
        },
        parameters=[s.PairsImportQuerySerializer],
        examples=[OpenApiExample("A JSON list", value=_IMPORT_EXAMPLE, request_only=True)],
        summary="Import pairs (or TRL or HH-RLHF preference rows), all or nothing",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        query = _query(request, s.PairsImportQuerySerializer)
        result = services.pairs_import(
            project=project,
            items=files.import_items(request.data, "pairs"),
            max_items=settings.PAIRWISE_MAX_IMPORT_ITEMS,
            format=query["format"],
        )
        return Response(s.ImportResultSerializer(result).data, status=201)


# Rating


class NextView(ApiView):
    @extend_schema(
        request=None,
        responses={
            200: s.ServedAssignmentSerializer,
            204: OpenApiResponse(
                description="No pair for the caller now: done when there is no Retry-After header; "
                "with one, the remaining places are held by other raters' leases, ask again then."
            ),
            404: error_response("No such project, or not one the caller rates in."),
        },
        parameters=[
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[204],
                description="Seconds until a held place may come free; absent when the rater is done.",
            )
        ],
        summary="The caller's next pair (or the one they hold)",
    )
    def post(self, request: Request, slug: str) -> Response:
        served, wait = _next(request, _project(request, slug))
        if served is None:
            return Response(status=204, headers={} if wait is None else {"Retry-After": str(wait)})
        return Response(served)


def _next(request: Request, project: Project) -> tuple[dict[str, Any] | None, int | None]:
    """(the caller's next assignment as NextView serves it, None) or (None, seconds to wait or None)."""
    served = services.assignment_next(project=project, user=request.user)
    rater = services.rater_get_or_create(user=request.user) if served is None else None
    return _served(project, served, rater)


def _served(
    project: Project, served: services.Served | None, rater: Any
) -> tuple[dict[str, Any] | None, int | None]:
    """The assignment as served, or (None, seconds the rater should wait or None when they are done)."""
    if served is None:
        return None, selectors.rater_wait_seconds(project=project, rater=rater)
    context = {"progress": served.progress, "project": project}
    return s.ServedAssignmentSerializer(served.assignment, context=context).data, None


def _with_next(body: dict[str, Any], answered: Any, following: services.Served | None) -> dict[str, Any]:
    """The one-round-trip answer: the judgment or skip (of the ``answered`` assignment, whose project and
    rater the engine has loaded), then the next assignment (null when none)."""
    served, wait = _served(answered.project, following, answered.rater)
    return {**body, "next": served, "retry_after": wait}


_NEXT_DESCRIPTION = (
    'With `"next": true`, the answer also carries `next`, the caller\'s next assignment as `POST '
    ".../next/` serves it (null when nothing is left for them), and `retry_after`, the seconds until a "
    "place held by another rater may come free when `next` is null (null: the rater is done)."
)


# A judgment or a skip is a few fields and at most MAX_RATIONALE characters (at most 12 bytes each, an
# emoji written as a JSON escape pair): refused before it is read past this, where an import may be 50 MiB.
SMALL_BODY_BYTES = 128 * 1024


class JudgmentView(ApiView):
    body_limit = SMALL_BODY_BYTES

    @extend_schema(
        request=s.JudgmentRequestSerializer,
        responses={
            201: s.JudgmentAnswerSerializer,
            400: error_response("Bad choice or strength, a tie where ties are off, a missing rationale."),
            404: error_response("Not the caller's assignment."),
            409: error_response("already_judged, assignment_expired or assignment_skipped."),
        },
        summary="Judge an assignment (and, with next, get the next one)",
        description=_NEXT_DESCRIPTION,
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        serializer = s.JudgmentRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if not data.pop("next"):
            judgment = services.judgment_record(assignment_id=assignment_id, user=request.user, **data)
            return Response(s.JudgmentRecordedSerializer(judgment).data, status=201)
        judgment, following = services.judgment_record_and_next(
            assignment_id=assignment_id, user=request.user, **data
        )
        body = s.JudgmentRecordedSerializer(judgment).data
        return Response(_with_next(body, judgment.assignment, following), status=201)


class NewestFirstPagination(IdCursorPagination):
    ordering = "-id"
    page_size = 20
    max_page_size = 100


class MyJudgmentsView(mixins.ListModelMixin, GenericApiView):
    """The caller's own judgments in a project, newest first: what a rater may still correct."""

    serializer_class = s.OwnJudgmentSerializer
    pagination_class = NewestFirstPagination

    def get_queryset(self) -> Any:
        project = _project(self.request, self.kwargs["slug"])
        return selectors.rater_judgments(project=project, user=self.request.user)

    @extend_schema(
        responses={200: s.OwnJudgmentSerializer(many=True), 404: error_response("No such project.")},
        summary="The caller's judgments in the project, newest first, with their earlier answers",
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)


class JudgmentCorrectionView(ApiView):
    body_limit = SMALL_BODY_BYTES

    @extend_schema(
        request=s.CorrectionRequestSerializer,
        responses={
            200: s.OwnJudgmentSerializer,
            400: error_response("Bad choice or strength, a tie where ties are off, a missing rationale."),
            403: error_response("The caller no longer rates in the judgment's project."),
            404: error_response("Not the caller's judgment."),
            409: error_response("correction_window_closed, corrections_off or not_correctable."),
        },
        summary="Correct the caller's judgment within the project's correction window",
    )
    def post(self, request: Request, judgment_id: int) -> Response:
        serializer = s.CorrectionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        judgment = services.judgment_correct(
            judgment_id=judgment_id, user=request.user, **serializer.validated_data
        )
        return Response(s.OwnJudgmentSerializer(selectors.judgment_load_revisions(judgment)).data)


class SkipView(ApiView):
    body_limit = SMALL_BODY_BYTES

    @extend_schema(
        request=s.SkipRequestSerializer,
        responses={
            200: s.SkipAnswerSerializer,
            404: error_response("Not the caller's assignment."),
            409: error_response("Already judged."),
        },
        summary="Skip an assignment: the pair is not shown to the caller again",
        description=_NEXT_DESCRIPTION,
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        serializer = s.SkipRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data["reason"]
        if not serializer.validated_data["next"]:
            assignment = services.assignment_skip(
                assignment_id=assignment_id, user=request.user, reason=reason
            )
            return Response(s.SkippedSerializer(assignment).data)
        assignment, following = services.assignment_skip_and_next(
            assignment_id=assignment_id, user=request.user, reason=reason
        )
        body = s.SkippedSerializer(assignment).data
        return Response(_with_next(body, assignment, following))


# Judgments made elsewhere


class JudgmentsImportView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": {"type": "object"}},
            "application/x-ndjson": {"type": "string", "description": "One judgment object per line."},
        },
        responses={
            201: s.JudgmentImportResultSerializer,
            400: error_response(
                'Invalid items: {"detail", "code", "errors": [{"index", "field", "message"}]}.'
            ),
            409: error_response(
                "Another import or rating of the same (pair, rater) happened at the same time."
            ),
            413: error_response("Too many bytes or items in one request."),
        },
        examples=[
            OpenApiExample(
                "A JSON list",
                value=[{"pair": "your-id-17", "rater": "annotator-3", "choice": "a", "shown_left": "b"}],
                request_only=True,
            )
        ],
        summary="Import judgments made elsewhere, all or nothing",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        result = services.judgments_import(
            project=project,
            items=files.import_items(request.data, "judgments"),
            max_items=settings.PAIRWISE_MAX_IMPORT_ITEMS,
        )
        return Response(s.JudgmentImportResultSerializer(result).data, status=201)


# Exports


class _ErrorsAsJSON(BaseContentNegotiation):
    """Exports answer files whatever the Accept header says; only their errors go through a renderer."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return (renderers[0], renderers[0].media_type)


class _ExportView(ApiView):
    permission_classes = [IsStaff]
    content_negotiation_class = _ErrorsAsJSON


def _query(request: Request, serializer_class: type = s.ExportQuerySerializer) -> dict[str, Any]:
    """The export filters of the query string, checked by one serializer for every export endpoint."""
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


_EXPORT_ERRORS = {
    400: error_response("A bad since, until or min_votes."),
    401: error_response("Not logged in."),
    403: error_response("Not staff."),
    404: error_response("No such project."),
}


class JudgmentsExportView(_ExportView):
    @extend_schema(
        parameters=[s.JudgmentsExportQuerySerializer],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One judgment per line: the fields of ExportedJudgment."
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then one judgment per row (UTF-8)."
            ),
            **_EXPORT_ERRORS,
        },
        summary="Every judgment of the project, streamed (.jsonl or .csv)",
    )
    def get(self, request: Request, slug: str, extension: str) -> StreamingHttpResponse:
        project = _project(request, slug)
        query = _query(request, s.JudgmentsExportQuerySerializer)
        return files.judgments_export(project=project, extension=extension, query=query)


class PreferencesExportView(_ExportView):
    @extend_schema(
        parameters=[s.PreferencesQuerySerializer],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR,
                description='One pair per line: {"prompt", "chosen", "rejected", "pair_id", "external_id", '
                '"votes", "agreement", "margin"}, as TRL reads it.',
            ),
            **_EXPORT_ERRORS,
        },
        summary="One preference per pair with a strict majority, streamed, in TRL's format",
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        project = _project(request, slug)
        query = _query(request, s.PreferencesQuerySerializer)
        return files.preferences_export(project=project, query=query)


class JudgmentsListView(mixins.ListModelMixin, GenericApiView):
    permission_classes = [IsStaff]
    serializer_class = s.ExportedJudgmentSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self) -> Any:
        project = _project(self.request, self.kwargs["slug"])
        filters = selectors.ExportFilter(**_query(self.request, s.JudgmentListQuerySerializer))
        return selectors.judgments_for_export(project=project, filters=filters)

    @extend_schema(parameters=[s.ExportQuerySerializer], summary="The judgment rows of the export, paginated")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)


# Agreement


class AgreementView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        parameters=[s.ExportQuerySerializer],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The agreement report (docs/API.md, Agreement): pooled figures with 95% "
                "bootstrap intervals, the estimated ceiling accuracy, side and length rates, judgments per "
                "day, progress and per-rater figures with flags. Undefined figures are null.",
            ),
            **_EXPORT_ERRORS,
        },
        summary="Inter-rater agreement and rater quality (cached until a judgment arrives)",
    )
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        filters = selectors.ExportFilter(**_query(request))
        return Response(selectors.project_agreement(project, filters=filters).as_dict())


# Leaderboard


_LEADERBOARD_ERRORS = {
    **_EXPORT_ERRORS,
    400: error_response("A bad filter or option, or an unknown reference."),
}


def _leaderboard(
    request: Request, slug: str, query: dict[str, Any] | None = None
) -> selectors.LeaderboardReport:
    project = _project(request, slug)
    query = _query(request, s.LeaderboardQuerySerializer) if query is None else query
    options = selectors.LeaderboardOptions(
        **{name: query.pop(name) for name in ("style", "exclude_flagged", "seed", "rounds")},
        reference=query.pop("reference", None),
    )
    return selectors.project_leaderboard(project, filters=selectors.ExportFilter(**query), options=options)


class LeaderboardView(ApiView):
    permission_classes = [IsStaff]

    @extend_schema(
        parameters=[s.LeaderboardQuerySerializer],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The leaderboard (docs/API.md, Leaderboard): Bradley-Terry ratings of the models "
                "with bootstrap intervals and rank ranges, battles, wins, losses and ties, the "
                "style-controlled ratings, and the win-rate and predicted-win matrices.",
            ),
            **_LEADERBOARD_ERRORS,
        },
        summary="The models' ratings from the judgments (cached until a judgment arrives)",
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(_leaderboard(request, slug).as_dict())


LEADERBOARD_COLUMNS = (
    "model", "rating", "lower", "upper", "rank", "rank_worst", "battles", "wins", "losses", "ties",
    "style_rating", "style_lower", "style_upper", "style_rank", "style_rank_worst",
)  # fmt: skip


class LeaderboardExportView(_ExportView):
    @extend_schema(
        parameters=[s.LeaderboardExportQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then one model per row, best first."
            ),
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="The body of GET .../leaderboard/, as a file."
            ),
            **_LEADERBOARD_ERRORS,
        },
        summary="The leaderboard as a file (.csv: one row per model; .json: the whole report)",
    )
    def get(self, request: Request, slug: str, extension: str) -> StreamingHttpResponse:
        query = _query(request, s.LeaderboardExportQuerySerializer)
        raw = query.pop("raw")  # as for judgments.csv; the JSON file is written as it is
        report = _leaderboard(request, slug, query)
        if extension == "csv":
            chunks = selectors.as_csv(report.model_rows(), LEADERBOARD_COLUMNS, raw=raw)
            return files.file_response(
                chunks, content_type="text/csv; charset=utf-8", filename=f"{slug}-leaderboard.csv"
            )
        body = json.dumps(report.as_dict(), ensure_ascii=False).encode()
        return files.file_response(
            [body], content_type="application/json", filename=f"{slug}-leaderboard.json"
        )
