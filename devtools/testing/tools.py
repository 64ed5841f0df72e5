"""External programs some tests drive (shellcheck, vagrant, kubeseal): skipped where missing, unless CI needs them."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRED_TOOLS_VARIABLE = "MOVIESTREAM_REQUIRE_TOOLS"


def needs_tool(name: str) -> pytest.MarkDecorator:
    """Skip a test when the program `name` is not on PATH, unless MOVIESTREAM_REQUIRE_TOOLS names it.

    .ci/run installs shellcheck and vagrant and names them there, so in CI a missing tool fails the
    run instead of hiding behind a skip; on a workstation without them the test is skipped and says why.
    """
    required = name in os.environ.get(REQUIRED_TOOLS_VARIABLE, "").split()
    # A required tool is never skipped: the test runs and fails on the missing program.
    return pytest.mark.skipif(not required and shutil.which(name) is None, reason=f"{name} is not installed")
