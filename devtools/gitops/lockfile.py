"""Reading requirements/lock.txt: which locked packages, with their hashes, an install needs.

The lock (`uv pip compile --generate-hashes`) pins every third-party package with its hashes
and lists our own packages as `-e` lines, which have no hash: they are built from this checkout.
`pip install --require-hashes` refuses a file holding both, so installs take the hashed part
from here and our packages separately. An image takes only what its service needs: the
third-party requirements of the service's pyproject.toml (following our own packages and their
extras), then everything the lock's `# via` annotations say those require, transitively.

Standard library only: the Dockerfiles run it with the base image's Python, before any install.
GROUPS names what a task needs alone: `promote` is what `invoke promote` and `invoke image-tags`
import, installed by CI's promote job and the master's deployer, nothing else.
Usage: python3 lockfile.py requirements/lock.txt [NAME | GROUP | PACKAGE_DIR ...]  (none: every locked package).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
EDITABLE = re.compile(r"^-e\s+(\S+)")
VIA = re.compile(r"^\s+#\s+(?:via\s+)?(\S+)\s*$")
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def normalise(name: str) -> str:
    """PEP 503: Flask, flask_cors and Flask.Cors name the same projects as flask and flask-cors."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Locked:
    """One locked package: its requirement line with hashes, and the packages that require it."""

    name: str
    version: str
    text: str
    via: set[str] = field(default_factory=set)


@dataclass
class Lock:
    packages: dict[str, Locked]
    editables: list[str]


def parse(text: str) -> Lock:
    packages: dict[str, Locked] = {}
    editables: list[str] = []
    current: Locked | None = None
    for line in text.splitlines():
        if pin := PIN.match(line):
            current = Locked(normalise(pin[1]), pin[2], line + "\n")
            if current.name in packages:
                raise ValueError(f"{current.name} is locked twice")
            packages[current.name] = current
        elif editable := EDITABLE.match(line):
            editables.append(editable[1])
            current = None
        elif current and line.lstrip().startswith("--hash="):
            current.text += line + "\n"
        elif current and (via := VIA.match(line)) and via[1] != "via":
            if not via[1].startswith("-"):
                current.via.add(normalise(via[1]))
        elif line.strip() and not line.startswith("#") and not line.lstrip().startswith("#"):
            current = None
    for locked in packages.values():
        if "--hash=" not in locked.text:
            raise ValueError(f"{locked.name}=={locked.version} has no hash")
    return Lock(packages, editables)


def _requirements(spec: str) -> tuple[str, set[str]]:
    match = REQUIREMENT.match(spec)
    if not match:
        raise ValueError(f"cannot read the requirement {spec!r}")
    extras = {normalise(extra) for extra in (match[2] or "").split(",") if extra.strip()}
    return normalise(match[1]), extras


def _project(directory: Path) -> dict:
    return tomllib.loads((directory / "pyproject.toml").read_text())["project"]


def local_packages(lock: Lock, root: Path) -> dict[str, Path]:
    """Our own packages (the lock's -e lines) that exist under root, by name."""
    found = {}
    for path in lock.editables:
        directory = root / path
        if (directory / "pyproject.toml").is_file():
            found[normalise(_project(directory)["name"])] = directory
    return found


def roots_of(directory: Path, local: dict[str, Path]) -> set[str]:
    """The third-party packages a local package requires, following our own packages and their extras."""
    wanted: set[str] = set()
    seen: set[tuple[str, str]] = set()
    pending = [(directory, "")]
    while pending:
        current, extra = pending.pop()
        if (str(current), extra) in seen:
            continue
        seen.add((str(current), extra))
        project = _project(current)
        specs = project.get("dependencies", []) if not extra else project["optional-dependencies"][extra]
        for spec in specs:
            name, extras = _requirements(spec.split(";")[0])
            if name in local:
                pending += [(local[name], "")] + [(local[name], e) for e in extras]
            else:
                wanted.add(name)
    return wanted


def closure(lock: Lock, roots: set[str]) -> set[str]:
    """The roots and everything the lock says they require, transitively."""
    missing = roots - lock.packages.keys()
    if missing:
        raise ValueError(f"not in the lock: {', '.join(sorted(missing))} (run `invoke lock`)")
    needed = set(roots)
    grew = True
    while grew:
        added = {name for name, locked in lock.packages.items() if name not in needed and locked.via & needed}
        needed |= added
        grew = bool(added)
    return needed


GROUPS = {"promote": ("invoke", "ruamel.yaml", "pyyaml")}


def requirements_text(lock: Lock, wanted: list[str], root: Path) -> str:
    """Hashed requirement lines for the package names and package directories in wanted (all when empty).

    root is the repository's root, which the lock's -e paths are relative to."""
    if not wanted:
        names = set(lock.packages)
    else:
        local = local_packages(lock, root)
        roots: set[str] = set()
        for item in [name for entry in wanted for name in GROUPS.get(entry, (entry,))]:
            directory = Path(item)
            roots |= roots_of(directory, local) if (directory / "pyproject.toml").is_file() else {normalise(item)}
        names = closure(lock, roots)
    return "".join(lock.packages[name].text for name in sorted(names))


# Each lock and the input it is compiled from, in requirements/.
LOCKS = {"lock.txt": "lock.in", "checkov.txt": "checkov.in"}
PYTHON_VERSION = "3.11"  # the images' Python


def compile_lock(root: Path, lock: str, output: Path | None = None, upgrade: bool = False) -> None:
    """uv pip compile the lock's input; pins already in the output file are kept unless upgrade."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not uv:
        raise RuntimeError("uv is not installed (it is in requirements/lock.txt: run ./test.sh)")
    target = output or Path("requirements") / lock
    command = [uv, "pip", "compile", "--quiet", "--generate-hashes", "--python-version", PYTHON_VERSION]
    command += ["--upgrade"] if upgrade else []
    command += ["--output-file", str(target), f"requirements/{LOCKS[lock]}"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"uv pip compile requirements/{LOCKS[lock]} failed:\n{result.stderr.strip()}")


def differences(committed: Lock, fresh: Lock) -> list[str]:
    """What a fresh compile would change. A hash PyPI added since (a new wheel of the same release) is not one."""
    problems = [
        f"-e {path}: in the inputs, not in the lock" for path in fresh.editables if path not in committed.editables
    ]
    problems += [
        f"-e {path}: in the lock, no longer in the inputs"
        for path in committed.editables
        if path not in fresh.editables
    ]
    for name in sorted(committed.packages.keys() | fresh.packages.keys()):
        old, new = committed.packages.get(name), fresh.packages.get(name)
        if old is None:
            problems.append(f"{name}: needed by the inputs ({new.version}), missing from the lock")
        elif new is None:
            problems.append(f"{name}=={old.version}: locked, but nothing in the inputs requires it")
        elif old.version != new.version:
            problems.append(f"{name}: locked at {old.version}, the inputs now resolve to {new.version}")
        elif not set(re.findall(r"--hash=(\S+)", old.text)) <= set(re.findall(r"--hash=(\S+)", new.text)):
            problems.append(f"{name}=={old.version}: a locked hash is not a file of that release")
    return problems


def stale(root: Path) -> list[str]:
    """Every way the committed locks differ from what their inputs compile to now (empty: up to date)."""
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        for lock in LOCKS:
            committed = root / "requirements" / lock
            fresh = Path(scratch) / lock
            shutil.copy(committed, fresh)  # the committed pins are the preferences, as in `invoke lock`
            compile_lock(root, lock, output=fresh)
            found = differences(parse(committed.read_text()), parse(fresh.read_text()))
            problems += [f"requirements/{lock}: {problem}" for problem in found]
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    lock_path = Path(argv[0])
    try:
        lock = parse(lock_path.read_text())
        sys.stdout.write(requirements_text(lock, argv[1:], lock_path.resolve().parent.parent))
    except (OSError, ValueError, KeyError) as error:
        print(f"lockfile: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
