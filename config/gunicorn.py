"""gunicorn's settings for Pairwise: `gunicorn -c config/gunicorn.py --bind HOST:PORT --workers N` (the app:
config.wsgi), as scripts/start, docker/compose.yml and the README's production example run it. Why each
setting is what it is, beside it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

wsgi_app = "config.wsgi"

# Threaded workers, because a response may stream for as long as its client reads: an export of any size
# to a slow client (docs/API.md). A sync worker tells the master it is alive only between requests, so the
# master kills it (WORKER TIMEOUT) in the middle of any response that lasts longer than `timeout`. A gthread
# worker's main loop tells it every second, whatever its threads are doing, so `timeout` (gunicorn's default,
# 30 s) only catches a worker whose main loop is stuck, and no request is cut for being long. Each thread
# holds its own database connection (DATABASE_CONN_MAX_AGE): workers x threads connections at most.
worker_class = "gthread"
threads = 4

# gunicorn 27's control socket (gunicornc) is one path per user (~/.gunicorn/gunicorn.ctl), which every
# server of that user on the machine would fight over; nothing here uses it.
control_socket_disable = True

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# A client that sends or reads nothing for this long is gone, or stalling on purpose to hold one of the
# worker's threads (the sync workers' `timeout` used to cut such a request; gthread's does not): its
# socket's reads and writes time out. A slow client that makes progress (an export read at 100 kB/s) is
# never cut. Behind a buffering reverse proxy (README: Running in production) this seldom matters.
CLIENT_IDLE_SECONDS = 30


def pre_request(worker: Any, req: Any) -> None:
    """Before the app reads the body or writes the response: the client's idle timeout on its socket."""
    sock = getattr(getattr(req, "unreader", None), "sock", None)
    if sock is not None:
        sock.settimeout(CLIENT_IDLE_SECONDS)


def post_fork(server: Any, worker: Any) -> None:
    """In each worker: die with the master, even when it is killed with SIGKILL.

    Without this a worker whose master died keeps its copy of the listening socket, serving as an orphan
    that nothing replaces or times out, and a new master cannot bind the port ("Connection in use"). The
    signal is SIGKILL, not SIGTERM, because a gracefully stopping worker keeps the socket for as long as its
    slowest response (graceful_timeout), and the restart must bind now; a request cut this way is like one
    whose worker crashed: its transaction rolls back and its client may send it again.
    """
    if not sys.platform.startswith("linux"):
        return  # elsewhere a worker still notices between requests that its master changed
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        errno = ctypes.get_errno()
        server.log.warning("Worker %s will outlive its master: prctl failed (errno %d)", worker.pid, errno)
    if os.getppid() != server.pid:
        os._exit(0)  # the master died between the fork and the line above: nobody sends the signal now
