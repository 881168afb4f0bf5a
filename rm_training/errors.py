"""The one kind of error the trainer raises for what a caller gave it: a data file, a setting, a model
directory, an output path. Plain Python (no torch), so that the config and data modules can raise it.

Its message is one line that says what is wrong and what to do; the commands print it after ``error: ``
and exit 2. Anything else that escapes is a fault of the trainer and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Something given to the trainer cannot be used; the message is one line that says what to do.

    A ValueError, so that callers that caught ValueError before keep catching it."""
