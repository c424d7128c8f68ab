"""User errors: a one-line message and exit status 2, never a traceback."""


class UserError(Exception):
    """Bad input from the user (flag, file, row, value). The message names the culprit."""

    exit_code = 2


class DataError(UserError):
    """A data row that cannot be used; the message names file and line."""


class QuietExit(Exception):
    """Another process already said why (rank 0's error about the run directory, a resume's damaged checkpoint)."""

    def __init__(self, code: int):
        self.code = code
