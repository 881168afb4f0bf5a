"""WSGI entry point for gunicorn and other WSGI servers."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from web.bodies import RequestBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# gunicorn's exit status for "App failed to load": it stops instead of booting worker after worker.
_APP_LOAD_ERROR = 4

try:
    application = RequestBodies(get_wsgi_application())
except ImproperlyConfigured as error:
    # A bad environment variable (config/settings.py checks them all): its one-line message in the
    # server's log, rather than a traceback from every worker that repeats it at the bottom.
    print(f"Configuration error: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
    raise SystemExit(_APP_LOAD_ERROR) from None
