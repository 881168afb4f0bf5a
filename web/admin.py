"""Django's user admin, with usernames that differ only in case refused in words (web.usernames) on the
add and the change form alike: Django's own add form says only "already exists", and its change form
would let a rename reach the database's unique index as an error page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from web import usernames


def _clean_username(form: forms.ModelForm) -> Any:
    username = form.cleaned_data.get("username")
    if username:
        existing = usernames.lookalike_taken(username, exclude_pk=form.instance.pk)
        if existing is not None:
            raise forms.ValidationError(usernames.lookalike_message(username, existing), code="unique")
    return username


class UserAddForm(AdminUserCreationForm):
    def clean_username(self) -> Any:
        return _clean_username(self)


class UserEditForm(UserChangeForm):
    def clean_username(self) -> Any:
        return _clean_username(self)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class PairwiseUserAdmin(UserAdmin):
    add_form = UserAddForm
    form = UserEditForm
