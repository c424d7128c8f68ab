"""User errors: a one-line message and exit status 2, never a traceback."""


class UserError(Exception):
    """Bad input from the user (flag, file, row, value). The message names the culprit."""

    exit_code = 2


class DataError(UserError):
    """A data row that cannot be used; the message names file and line."""
