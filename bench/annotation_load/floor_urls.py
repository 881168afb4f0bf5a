"""The floors of the load benchmark: views that do one INSERT and answer in JSON.

Served by the same gunicorn, settings and middleware as the product, so the gap between these and the
rating API is what the API's own work costs:

- `/floor/`: a bare Django view (the stack's floor: Django, gunicorn, PostgreSQL);
- `/floor/drf/`: a DRF view with the product's token authentication and JSON parser and renderer (the
  framework's floor): the gap between the two is DRF's cost and the token lookup, the rest is ours.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

FLOOR_TABLE_SQL = "CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, body text NOT NULL)"


def _insert(body: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_floor (body) VALUES (%s) RETURNING id", [body[:400]])
        (row_id,) = cursor.fetchone()
    return row_id


@csrf_exempt  # the floor has no session to protect; the product's token-authenticated API is exempt too
@require_POST
def insert_one(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"id": _insert(request.body[:200].hex())}, status=201)


class InsertOne(APIView):
    # As the rating API: a token, an authenticated user, the JSON body parsed and the answer rendered.
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        return Response({"id": _insert(repr(request.data))}, status=201)


urlpatterns = [path("floor/", insert_one), path("floor/drf/", InsertOne.as_view())]
