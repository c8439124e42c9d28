"""The base of volseg's own user-facing errors.

A :class:`VolsegError` says what is wrong with what the user gave volseg (a flag, a file, a config, a model,
a PACS) in one line that names it, so the command line prints that line and exits 2 with no traceback
(``volseg --debug ...`` shows it). Any other exception is a bug or an environment failure and keeps its
traceback. It is a ValueError, so code that catches ValueError (a batch's per-case isolation) is unchanged.
"""


class VolsegError(ValueError):
    """A problem with the user's input, told in one line naming the file, flag or key and the problem."""
