#!/usr/bin/env bash
# Runs every test on a fresh clone: makes .venv, installs the locked
# dependencies (hash-checked), finds PostgreSQL and RabbitMQ, then runs ruff,
# the lock check, invoke lint and every pytest suite. Extra arguments go to
# pytest (e.g. ./test.sh -k billing).
# ./test.sh --setup-only makes .venv and stops (orchestrator.sh and the local stack use it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${ROOT}/.venv"
COMPOSE_FILE="${ROOT}/tests/compose.yaml"

die() {
  echo "test.sh: $*" >&2
  exit 1
}

find_python() {
  local candidate
  # The lock is compiled for 3.11, the images' Python: the same one first.
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "${candidate}" >/dev/null 2>&1 \
      && "${candidate}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "${candidate}"
      return 0
    fi
  done
  return 1
}

ensure_venv() {
  local python stamp wanted
  if [[ ! -x "${VENV}/bin/python" ]]; then
    python="$(find_python)" || die "Python 3.11 or newer is required (install python3 and python3-venv)"
    echo "==> creating ${VENV} with $(${python} --version)"
    "${python}" -m venv "${VENV}" || die "could not create a virtual environment (Debian: apt-get install python3-venv)"
  fi
  stamp="${VENV}/.installed"
  wanted="$(cat "${ROOT}"/requirements/*.txt "${ROOT}"/apps/*/pyproject.toml | cksum)"
  if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${wanted}" ]]; then
    echo "==> installing the locked dependencies (hash-checked)"
    install_locked
    echo "${wanted}" >"${stamp}"
  fi
}

# Every third-party package exactly as requirements/lock.txt pins it, each
# file checked against its hashes; then our own packages (the lock's -e
# lines) from this checkout, built by the locked setuptools without fetching
# anything; then checkov in a venv of its own (see requirements/checkov.in).
install_locked() {
  local pip=("${VENV}/bin/python" -m pip --quiet --disable-pip-version-check)
  "${VENV}/bin/python" "${ROOT}/devtools/gitops/lockfile.py" "${ROOT}/requirements/lock.txt" >"${VENV}/locked.txt"
  "${pip[@]}" install --require-hashes --no-deps -r "${VENV}/locked.txt"
  grep '^-e ' "${ROOT}/requirements/lock.txt" >"${VENV}/editables.txt"
  "${pip[@]}" install --no-deps --no-index --no-build-isolation -r "${VENV}/editables.txt"
  "${pip[@]}" check
  if [[ ! -x "${VENV}/checkov/bin/python" ]]; then
    "${VENV}/bin/python" -m venv "${VENV}/checkov"
  fi
  "${VENV}/checkov/bin/python" -m pip --quiet --disable-pip-version-check install --require-hashes --no-deps \
    -r "${ROOT}/requirements/checkov.txt"
  ln -sf ../checkov/bin/checkov "${VENV}/bin/checkov"
}

ensure_services() {
  if "${VENV}/bin/python" -m devtools.stack.preflight 2>/dev/null; then
    return 0
  fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "==> PostgreSQL or RabbitMQ not found locally; starting them with docker compose"
    docker compose -f "${COMPOSE_FILE}" up --detach --wait || die "docker compose could not start the services"
  fi
  "${VENV}/bin/python" -m devtools.stack.preflight \
    || die "PostgreSQL and RabbitMQ must be reachable (see above), or Docker must be running"
}

main() {
  cd "${ROOT}"
  ensure_venv
  if [[ "${1:-}" == --setup-only ]]; then
    echo "==> ${VENV} is ready (activate: source .venv/bin/activate)"
    return 0
  fi
  # Programs installed by pip (shellcheck, hadolint, check-jsonschema) are found by the tests.
  export PATH="${VENV}/bin:${PATH}"
  ensure_services
  echo "==> ruff"
  "${VENV}/bin/ruff" check .
  "${VENV}/bin/ruff" format --check .
  echo "==> invoke lock --check (the locks match their inputs; asks PyPI)"
  "${VENV}/bin/invoke" lock --check
  echo "==> invoke lint (YAML, kustomize builds, schemas, manifest rules, checkov, zizmor, detect-secrets)"
  "${VENV}/bin/invoke" lint
  echo "==> pytest"
  "${VENV}/bin/python" -m pytest "$@"
}

main "$@"
