"""The rating page's two form posts, and the login form. Types only: what a project allows (ties,
strength, a required rationale) is judged by services.judgment_record, as for the API's serializer."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from annotation.models import MAX_RATIONALE, MAX_TIME_MS, ShownChoice
from web import login_throttle
from web.ids import MAX_ID


class _AssignmentForm(forms.Form):
    # The assignment the page showed: a post answers that pair, never "whatever is current now".
    assignment = forms.IntegerField(min_value=1, max_value=MAX_ID, widget=forms.HiddenInput)


class CorrectionForm(forms.Form):
    """An answer: a correction posts these (to its judgment's URL), a judgment these and more."""

    choice = forms.ChoiceField(
        choices=ShownChoice.choices,
        error_messages={"required": "Choose a response (or a tie) first: nothing was saved."},
    )
    strength = forms.IntegerField(required=False)
    rationale = forms.CharField(required=False, strip=False, max_length=MAX_RATIONALE)


class JudgmentForm(_AssignmentForm, CorrectionForm):
    # Filled in by rate.js; absent when the page runs without JavaScript.
    client_time_ms = forms.IntegerField(required=False, min_value=0, max_value=MAX_TIME_MS)


class SkipForm(_AssignmentForm):
    # The API's bound (SkipRequestSerializer).
    reason = forms.CharField(required=False, max_length=2000)


class _SaysWhenThrottled(AuthenticationForm):
    """A login form that says so when a login was refused for too many failures (web.login_throttle)."""

    def get_invalid_login_error(self) -> forms.ValidationError:
        refused = login_throttle.refusal_of(self.request)
        if refused is not None:
            return forms.ValidationError(refused.message(), code="throttled")
        return super().get_invalid_login_error()


class LoginForm(_SaysWhenThrottled):
    """The site's login page."""


class AdminLoginForm(_SaysWhenThrottled, AdminAuthenticationForm):
    """The admin's login page (config/urls.py sets it on the admin site)."""
