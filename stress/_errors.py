"""The root of every error ``stress`` raises on purpose, and its one subclass for deployments."""

from __future__ import annotations


class StressError(Exception):
    """Bad input to the harness (exit code 2 on the CLI)."""

    exit_code = 2


class DeployError(StressError):
    """A deployment that could not be brought up or died under test (not ready in time,
    crashed or OOM, port in use, never scheduled, cluster unreachable)."""

    exit_code = 1
