"""Run every end-to-end check and print `N passed, N failed`.

python -m devtools.e2e local      the three services as local processes
python -m devtools.e2e cluster    the platform in the cluster of the current kubeconfig
python -m devtools.e2e gitops     a commit pushed to --remote reaches that cluster through Argo CD
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from devtools.e2e import gitops
from devtools.e2e.checks import CHECKS
from devtools.e2e.cluster import ClusterPlatform
from devtools.e2e.local import LocalPlatform


def run_all(platform: object) -> int:
    passed = failed = 0
    for check in CHECKS:
        started = time.monotonic()
        try:
            check(platform)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
            failed += 1
            print(f"FAIL {check.__name__} ({time.monotonic() - started:.1f} s)\n{traceback.format_exc()}", flush=True)
        else:
            passed += 1
            print(f"ok   {check.__name__} ({time.monotonic() - started:.1f} s)", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.e2e", description=__doc__)
    parser.add_argument("target", choices=["local", "cluster", "gitops"], help="where the platform runs")
    parser.add_argument("--namespace", default="moviestream", help="the workload's namespace (cluster)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for rollouts (cluster, gitops)")
    parser.add_argument("--remote", default="cluster", help="the git remote Argo CD follows (gitops)")
    arguments = parser.parse_args()
    if arguments.target == "gitops":
        return gitops.check(arguments.remote, arguments.namespace, arguments.timeout)
    if arguments.target == "cluster":
        with ClusterPlatform(arguments.namespace, arguments.timeout) as platform:
            return run_all(platform)
    with LocalPlatform() as platform:
        return run_all(platform)


if __name__ == "__main__":
    sys.exit(main())
