"""The project's exception hierarchy.

A ``UserError`` is something the person running a command can fix (a bad file, a bad flag, a server
that is not running).  The CLI prints its message as one line and exits 2; nothing else about it is
shown.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BibleQAError(Exception):
    """Base class of every error this project raises on purpose."""


class UserError(BibleQAError):
    """An input the user can fix; its message names the input and the fix, on one line."""


class DataError(UserError):
    """A data file (QA set, lexicon) is missing, unreadable or malformed."""


class ScriptureReferenceError(UserError):
    """A Bible reference does not name real KJV verses."""


class LMUnavailableError(UserError):
    """The LM server cannot be reached, or does not serve the requested model."""


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or used."""
