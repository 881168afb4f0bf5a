"""Who may call what: staff-only endpoints, and staff-only writes on otherwise readable ones."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission


class IsStaff(BasePermission):
    """Active staff only. Anonymous callers get 401 (DRF's authentication check), others 403."""

    message = "Only staff may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsStaffOrReadOnly(IsStaff):
    """Any signed-in user may read (what they may see is the selectors' business); staff may write."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if request.method in SAFE_METHODS:
            return bool(user and user.is_authenticated and user.is_active)
        return super().has_permission(request, view)
