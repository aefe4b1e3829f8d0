"""External programs some tests drive, and the Debian package that ships each.

`make test` passes on a fresh machine with only Python and make: a test that needs one of these
skips with one line naming the package (`.ci/run` installs them all and runs everything).

    pytestmark = needs("chromium")      # a whole file or one test
    require("kdig")                     # inside a helper: skips the calling test
"""

from __future__ import annotations

import shutil

import pytest

PACKAGES = {
    "dig": "dnsutils",
    "kdig": "knot-dnsutils",
    "chromium": "chromium",
    "dnsperf": "dnsperf",
}


def tool_path(tool: str) -> str | None:
    """The program's path on PATH, or None."""
    return shutil.which(tool)


def _reason(tool: str) -> str:
    return f"{tool} not installed (Debian package {PACKAGES[tool]})"


def needs(tool: str) -> pytest.MarkDecorator:
    """A skip marker for tests that run `tool`."""
    return pytest.mark.skipif(tool_path(tool) is None, reason=_reason(tool))


def require(tool: str) -> str:
    """`tool`'s path, or skip the running test with one line naming its package."""
    path = tool_path(tool)
    if path is None:
        pytest.skip(_reason(tool))
    return path
