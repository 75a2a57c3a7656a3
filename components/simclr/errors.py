"""The one exception type that means "the user's input is wrong"."""


class UserError(Exception):
    """Bad input, reported to the user as one line and a non-zero exit.

    Raise it with a message that names the offending flag, file or URI, e.g.
    ``UserError("--temperature must be > 0, got -1")``.
    """
