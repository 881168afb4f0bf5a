"""Where a trained model goes: the output directory is checked before any work, and written whole or not
at all.

A run refuses an output that is a file, or a non-empty directory unless told to overwrite it; and even
then only a directory that training wrote (one with its ``training_config.json``), so that a slip of the
keyboard never deletes unrelated files. The model is written into a fresh directory beside the output and
swapped in by renames once complete, so that the output holds the old model or the new one, never part of
one, whenever the run stops. A run that stops with an error or a signal removes that directory; one killed
outright (SIGKILL, out of memory) cannot, and the next write to the same output (or the worker, once its
trainer is gone) removes it with :func:`remove_leftovers`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import CONFIG_FILENAME
from .errors import InputError

# The folder beside a LoRA run's merged model that holds the adapter alone (rm_training.model.save_model).
ADAPTER_DIRNAME = "adapter"


def check_output_dir(path: str | Path, *, overwrite: bool, reads: Iterable[str | Path] = ()) -> None:
    """An InputError (one line) when a run could not write its model to ``path``, or would mix it into
    other files. ``reads``: the paths the run reads (its data, its base model), which replacing the
    output must not delete."""
    path = Path(path)
    if path.is_symlink():
        # The swap renames: it would replace the link, never write where it points.
        raise InputError(f"output {path} is a symbolic link: name the directory it points to")
    if path.exists():
        if not path.is_dir():
            raise InputError(f"output {path} is a file, not a directory: name a new or empty directory")
        if any(path.iterdir()):
            if not overwrite:
                raise InputError(
                    f"output {path} is not empty: pass --overwrite to replace the model in it, "
                    "or name a new directory"
                )
            if not (path / CONFIG_FILENAME).is_file():
                raise InputError(
                    f"output {path} holds files that train did not write (it has no {CONFIG_FILENAME}), "
                    "and --overwrite only replaces a trained model: empty it or name a new directory"
                )
        # Replacing moves the directory away and deletes it: never with the working directory in it,
        # nor the files this run reads.
        resolved = path.resolve()
        if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
            raise InputError(
                f"output {path} is the working directory or holds it: name a directory inside it"
            )
        for read in reads:
            if resolved == Path(read).resolve() or resolved in Path(read).resolve().parents:
                raise InputError(
                    f"output {path} holds {read}, which this run reads: write the model elsewhere"
                )
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"output {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"output {path}: no permission to write in {ancestor}")


@contextlib.contextmanager
def written_whole(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A fresh directory beside ``path`` to write the model into. When the block ends normally it takes
    the place of ``path`` (and of what was there) by two renames; when it raises, it is removed and
    ``path`` is left as it was.

    The output is checked again at the swap, since files may have appeared there during a run: it is
    replaced only while empty, or (with ``overwrite``) while it holds nothing but files the new model
    replaces. Otherwise nothing there is touched and the new model is kept beside it, named in the error.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    staging = _beside(path, PARTIAL)
    staging.mkdir()
    old: Path | None = None
    try:
        try:
            yield staging
        except OSError as error:
            if error.filename is not None:
                raise
            # A write that fails (a full disk) does not say which file it wrote: name the output.
            raise OSError(error.errno, f"writing the model: {error.strerror or error}", str(path)) from error
        _follow_umask(staging)
        reason = _not_replaceable(path, staging, overwrite=overwrite)
        if reason is not None:
            kept = path.with_name(f"{path.name}.new-{secrets.token_hex(3)}")
            os.replace(staging, kept)
            raise InputError(f"output {path} {reason}: nothing in it was touched; the new model is in {kept}")
        if path.exists() or path.is_symlink():
            old = _beside(path, "old")
            os.replace(path, old)
        try:
            os.replace(staging, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def _follow_umask(directory: Path) -> None:
    """Give every file written into ``directory`` the mode a plain open() gives under this process's umask.
    Some writers (safetensors) create their file 0600, which a web process running as another user could
    not read although the rest of the directory is readable."""
    mode = 0o666 & ~_umask()
    for entry in directory.rglob("*"):
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, mode)


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask sets it to read it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def _not_replaceable(path: Path, staging: Path, *, overwrite: bool) -> str | None:
    """Why the output may not be replaced by the staged model now, or None when it may."""
    if not (path.exists() or path.is_symlink()):
        return None
    if not path.is_dir() or path.is_symlink():
        return "is no longer a directory"
    entries = {entry.name for entry in path.iterdir()}
    if not entries:
        return None
    if not overwrite:
        return "is no longer empty (files appeared during the run)"
    # A LoRA run's adapter folder is train's too: a run without LoRA replaces it.
    stray = sorted(entries - {entry.name for entry in staging.iterdir()} - {ADAPTER_DIRNAME})
    if stray:
        more = ", ..." if len(stray) > 3 else ""
        return f"holds files a model would not replace ({', '.join(stray[:3])}{more})"
    return None


PARTIAL = "partial"


def remove_leftovers(path: str | Path) -> list[Path]:
    """Remove the model directories that writers of ``path`` on this machine staged beside it and left
    when they were killed before they could remove them (their process is gone); returns them."""
    path = Path(path).absolute()
    removed = []
    for entry in path.parent.glob(f".{glob.escape(path.name)}.{PARTIAL}-*"):
        writer = entry.name.removeprefix(f".{path.name}.{PARTIAL}-").rpartition("-")[0]  # host-pid
        host, _, pid = writer.rpartition("-")
        if host == socket.gethostname() and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _beside(path: Path, kind: str) -> Path:
    """A hidden name in the same directory, so that the renames stay on one file system; it names the
    machine and process that write it, so that what a killed writer left can be told from a live one's."""
    return path.with_name(f".{path.name}.{kind}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
