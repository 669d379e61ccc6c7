"""One exception family for user-facing errors.

Every error a user can fix (bad config, missing or malformed input, stale cache, a lock
held by another process) is a :class:`PipelineError`. The command-line stages turn it
into a one-line message and exit code 2; anything else is a bug and exits 1.
"""


class PipelineError(Exception):
    """Base class: an error the user can act on. ``str(err)`` is the one-line message."""


class ConfigError(PipelineError):
    """A config file, key or ``--set`` override is invalid."""


class InputError(PipelineError):
    """An input file (video, labels, pose) is missing, unreadable or malformed."""


class CacheError(PipelineError):
    """The feature cache is missing, stale or inconsistent with the run."""


class LockError(PipelineError):
    """Another process holds the lock on a cache or run folder."""


class RunError(PipelineError):
    """A run folder is missing something (e.g. final models) or is inconsistent."""
