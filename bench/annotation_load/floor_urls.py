"""The floor of the load benchmark: a bare Django view that does one INSERT and answers in JSON.

Served by the same gunicorn, settings and middleware as the product, so the gap between this and the
rating API is what the API's own work (authentication, the engine's queries, serializers) costs.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

FLOOR_TABLE_SQL = "CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, body text NOT NULL)"


@csrf_exempt  # the floor has no session to protect; the product's token-authenticated API is exempt too
@require_POST
def insert_one(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_floor (body) VALUES (%s) RETURNING id", [request.body[:200].hex()])
        (row_id,) = cursor.fetchone()
    return JsonResponse({"id": row_id}, status=201)


urlpatterns = [path("floor/", insert_one)]
