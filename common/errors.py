"""User-facing errors.

Anything a user can fix (a bad flag, a missing dataset, a corrupted checkpoint) is raised as a
:class:`UserError`; the entry scripts catch it, print its one-line message and exit with status 2.
"""


class UserError(Exception):
    """An error caused by the user's input or environment, with a message the user can act on."""


class DatasetNotFoundError(UserError):
    """The requested dataset is not on disk and cannot be downloaded."""


class CheckpointError(UserError):
    """A checkpoint is unreadable or was written for another configuration."""


class NonFiniteError(UserError):
    """The synthetic set became NaN or inf during distillation."""


class UnknownChoiceError(UserError, ValueError):
    """A name (dataset, model, synset, eval mode ...) that is not one of the valid choices."""


def choice_error(what: str, value, choices) -> UnknownChoiceError:
    """Error saying `value` is not a valid `what`, listing the valid choices."""
    return UnknownChoiceError(f"unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}")
