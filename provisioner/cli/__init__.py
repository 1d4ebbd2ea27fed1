"""The command line: parse, call one ``api`` function, render with rich, map errors to exits.

click and rich live in this package only; the library below never prints. ``app`` holds the
group, the shared options and the error handling; each command group has a module
(``node``, ``rental``, ``fleet``, ``bench``, ``batch``) and its rendering next to it (``*_views``).
"""

from __future__ import annotations

from . import batch, bench, fleet, node, rental  # noqa: F401  (each registers its commands on ``cli``)
from .app import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point of the ``provision`` console script."""
    cli(prog_name="provision")
