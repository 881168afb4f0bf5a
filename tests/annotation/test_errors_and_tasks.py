"""Errors that escape a service reach API callers in the error shape; Celery acknowledges late only
where a second run is harmless."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from annotation import tasks
from config.celery import app
from web.api import exception_handler


class _RaisesValidationError(APIView):
    permission_classes: list[type] = []

    def post(self, request):
        raise ValidationError({"lease_seconds": ["Too short."], "__all__": ["Inconsistent settings."]})


def test_a_django_validation_error_from_a_service_is_a_400_in_the_error_shape():
    response = _RaisesValidationError.as_view()(APIRequestFactory().post("/x", {}, format="json"))
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert {"field": "lease_seconds", "message": "Too short."} in response.data["errors"]
    assert {"field": None, "message": "Inconsistent settings."} in response.data["errors"]


def test_the_handler_also_takes_a_plain_message():
    response = exception_handler(ValidationError("Nope."), {})
    assert response is not None and response.status_code == 400
    assert response.data["errors"] == [{"field": None, "message": "Nope."}]


def test_tasks_are_acknowledged_on_receipt_unless_a_rerun_is_harmless():
    # A late-acknowledged task running past Redis's visibility timeout is delivered again: a training
    # run would start twice. Only tasks that may run twice opt in.
    assert app.conf.task_acks_late is False
    assert tasks.leases_expire.acks_late is True
