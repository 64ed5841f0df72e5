"""The end-to-end checks of devtools/e2e against the three services running as local processes.

The same checks run against a cluster in CI (`python -m devtools.e2e`), so
the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devtools.e2e.checks import CHECKS
from devtools.e2e.local import LocalPlatform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with LocalPlatform(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.mark.stack
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_whole_stack(platform: LocalPlatform, check: Callable[[LocalPlatform], None]) -> None:
    check(platform)
