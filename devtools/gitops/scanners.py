"""The two scanners of `invoke lint` that read the whole repository: checkov, the policy scanner,
over what is deployed and built (the rendered overlays, the Dockerfiles, the workflows), and
detect-secrets over every tracked file. Both run offline. A finding is fixed, or skipped next to
its object with a one-line reason (`checkov.io/skipN` annotations, `# checkov:skip=` comments);
detect-secrets' false positives are in .secrets.baseline, which holds hashes, never a secret.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from devtools.gitops.lint import is_target
from devtools.gitops.manifests import RenderError, kustomization_dirs, render

BIN = Path(sys.executable).parent
BASELINE = ".secrets.baseline"
# Lock hashes, SealedSecret ciphertext, the baseline's own hashes and the overlays' image tags and
# digests (content hashes, rewritten by every promotion) are random by design; lint's own rules
# refuse a plaintext Secret anywhere. The baseline is made with these same options:
# `invoke secrets-baseline`.
SECRET_SCAN_OPTIONS = [
    "--exclude-lines",
    r"^\s*(newTag|digest): *[\"']?([0-9a-f]{7,64}|sha256:[0-9a-f]{64})[\"']?\s*$",
    "--exclude-files",
    r"^requirements/.*\.txt$",
    "--exclude-files",
    r"^sealed-secrets/.*-sealedsecret\.yaml$",
    "--exclude-files",
    r"^\.secrets\.baseline$",
]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def _render_targets(root: Path, into: Path) -> None:
    """Each target, rendered as Argo CD renders it, into one file named after it (overlays/vagrant: vagrant.yaml,
    clusters/vagrant/observability: vagrant-observability.yaml)."""
    for directory in kustomization_dirs(root):
        source = directory.relative_to(root)
        if is_target(str(source)):
            with suppress(RenderError):  # invoke lint's build of every kustomization reports it
                objects = [item.obj for item in render(directory, root)]
                (into / f"{'-'.join(source.parts[1:])}.yaml").write_text(yaml.safe_dump_all(objects))


def _failed_checks(report: Any) -> list[dict[str, Any]]:
    reports = report if isinstance(report, list) else [report]
    return [check for item in reports for check in (item.get("results") or {}).get("failed_checks", [])]


def policy_problems(root: Path) -> list[str]:
    """checkov's failed checks over the rendered overlays, the Dockerfiles and the workflows."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch)
        (tree / "overlays").mkdir()
        _render_targets(root, tree / "overlays")
        shutil.copytree(root / "Dockerfiles", tree / "Dockerfiles")
        shutil.copytree(root / ".github" / "workflows", tree / ".github" / "workflows")
        command = [str(BIN / "checkov"), "--directory", str(tree), "--output", "json", "--quiet", "--compact"]
        command += ["--skip-download", "--framework", "kubernetes", "dockerfile", "github_actions"]
        result = _run(command, tree)
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            return [f"checkov exited {result.returncode}: {result.stderr.strip()[-2000:]}"]
    problems = []
    for check in _failed_checks(report):
        where = check["file_path"].lstrip("/")
        # A Dockerfile's or a workflow's resource is the file itself.
        if not check["resource"].lstrip("/").startswith(where):
            where += f": {check['resource']}"
        problems.append(f"checkov: {where}: {check['check_id']} {check['check_name']}")
    return problems


def _secret_scan(root: Path) -> dict[str, Any]:
    result = _run([str(BIN / "detect-secrets"), "scan", *SECRET_SCAN_OPTIONS], root)
    if result.returncode:
        raise RuntimeError(f"detect-secrets exited {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def write_secrets_baseline(root: Path) -> int:
    """Record every current finding as an audited false positive; the caller has read each one."""
    scan = _secret_scan(root)
    findings = [item for items in scan["results"].values() for item in items]
    for item in findings:
        item["is_secret"] = False
    (root / BASELINE).write_text(json.dumps(scan, indent=2) + "\n")
    return len(findings)


def secret_problems(root: Path) -> list[str]:
    """What detect-secrets finds in the tracked files beyond the audited false positives of the baseline."""
    try:
        scan = _secret_scan(root)
    except RuntimeError as error:
        return [str(error)]
    baseline = json.loads((root / BASELINE).read_text()) if (root / BASELINE).exists() else {"results": {}}
    known = {(path, item["hashed_secret"]) for path, items in baseline["results"].items() for item in items}
    return [
        f"detect-secrets: {path}:{item['line_number']}: {item['type']} (move a real secret out of git; "
        "after reading a false positive, `invoke secrets-baseline`)"
        for path, items in scan["results"].items()
        for item in items
        if (path, item["hashed_secret"]) not in known
    ]
