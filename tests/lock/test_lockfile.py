"""requirements/lock.txt read as the installs read it: each image's share, hashes required, staleness."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from devtools.gitops import lockfile
from devtools.gitops.manifests import ROOT

LOCK = ROOT / "requirements" / "lock.txt"
SERVICES = ("inventory-app", "billing-app", "api-gateway")


def installed_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """What pip installed for a package, read from the installed metadata of this venv."""
    found: set[str] = set()
    pending = [(name, extras)]
    seen = set()
    while pending:
        current, wanted = pending.pop()
        if (current, wanted) in seen:
            continue
        seen.add((current, wanted))
        found.add(lockfile.normalise(current))
        for spec in importlib.metadata.requires(current) or []:
            requirement = Requirement(spec)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_an_images_share_of_the_lock_is_what_its_package_requires(service: str) -> None:
    lock = lockfile.parse(LOCK.read_text())
    text = lockfile.requirements_text(lock, [str(ROOT / "apps" / service)], ROOT)
    chosen = {line.split("==")[0] for line in text.splitlines() if "==" in line}
    ours = set(lockfile.local_packages(lock, ROOT))
    assert chosen == installed_closure(service) - ours


def test_every_locked_package_has_hashes_and_the_whole_lock_is_the_default() -> None:
    lock = lockfile.parse(LOCK.read_text())
    text = lockfile.requirements_text(lock, [], ROOT)
    assert text.count("==") == len(lock.packages) > 50
    assert all("--hash=sha256:" in locked.text for locked in lock.packages.values())
    assert sorted(lock.editables) == [
        "./apps/api-gateway",
        "./apps/billing-app",
        "./apps/common",
        "./apps/inventory-app",
    ]


BLOCK = "flask==3.1.3 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n    # via -r requirements/lock.in\n"


def test_a_pin_without_a_hash_is_refused() -> None:
    with pytest.raises(ValueError, match=r"flask==3\.1\.3 has no hash"):
        lockfile.parse("flask==3.1.3\n    # via -r requirements/lock.in\n")


def test_a_package_locked_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="flask is locked twice"):
        lockfile.parse(BLOCK + BLOCK.replace("flask", "Flask"))


def test_a_name_outside_the_lock_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"not in the lock: requests \(run `invoke lock`\)"):
        lockfile.requirements_text(lockfile.parse(BLOCK), ["requests"], ROOT)


def test_the_script_prints_the_hashed_lines_and_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "lock.txt").write_text(BLOCK)
    script = [sys.executable, str(ROOT / "devtools/gitops/lockfile.py"), str(tmp_path / "lock.txt")]
    printed = subprocess.run([*script, "flask"], capture_output=True, text=True, check=True).stdout
    assert printed == "flask==3.1.3 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n"
    failed = subprocess.run([*script, "django"], capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert failed.stderr == "lockfile: not in the lock: django (run `invoke lock`)\n"


def test_differences_name_a_changed_version_a_missing_and_an_extra_package() -> None:
    committed = lockfile.parse(BLOCK + BLOCK.replace("flask", "click"))
    fresh = lockfile.parse(BLOCK.replace("3.1.3", "3.1.4") + BLOCK.replace("flask", "jinja2"))
    assert lockfile.differences(committed, fresh) == [
        "click==3.1.3: locked, but nothing in the inputs requires it",
        "flask: locked at 3.1.3, the inputs now resolve to 3.1.4",
        "jinja2: needed by the inputs (3.1.3), missing from the lock",
    ]


def test_a_wheel_added_to_a_locked_release_is_not_staleness_but_a_vanished_hash_is() -> None:
    committed = lockfile.parse(BLOCK)
    assert (
        lockfile.differences(committed, lockfile.parse(BLOCK.replace("bbbb", "bbbb \\\n    --hash=sha256:cccc"))) == []
    )
    assert lockfile.differences(committed, lockfile.parse(BLOCK.replace("bbbb", "dddd"))) == [
        "flask==3.1.3: a locked hash is not a file of that release"
    ]


def test_a_dependency_added_to_an_input_makes_the_lock_stale(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    shutil.copytree(
        ROOT / "apps", tmp_path / "apps", ignore=shutil.ignore_patterns("tests", "*.egg-info", "__pycache__")
    )
    assert lockfile.stale(tmp_path) == []
    with (tmp_path / "requirements/lock.in").open("a") as inputs:
        inputs.write("tomli-w>=1\n")
    [problem] = lockfile.stale(tmp_path)
    assert re.fullmatch(
        r"requirements/lock.txt: tomli-w: needed by the inputs \([\d.]+\), missing from the lock", problem
    )
