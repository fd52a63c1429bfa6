"""The one exception type that the CLI turns into a single line and an exit code."""


class UserError(Exception):
    """Bad input or an unmet precondition the user can fix; never a bug.

    The CLI prints ``autoconf: error: <message>`` and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
