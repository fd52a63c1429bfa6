"""autoconf's error root: what the CLI turns into a single line and an exit code."""


class AutoconfError(Exception):
    """Root of every error autoconf raises on purpose (never a bug)."""

    exit_code = 2


class UserError(AutoconfError):
    """Bad input or an unmet precondition the user can fix.

    The CLI prints ``autoconf: error: <message>`` and exits with ``exit_code`` (2 unless given).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
