"""The error kops raises for input a user can fix (the CLI prints it as one line, exit 2)."""


class KopsError(Exception):
    """A model file kops cannot profile: missing, not ONNX, truncated, or an unresolved dim."""

    exit_code = 2
