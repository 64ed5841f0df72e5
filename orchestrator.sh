#!/usr/bin/env bash
# Creates and drives the two-node K3s cluster, and hands it to Argo CD.
# Run `./orchestrator.sh help` for the commands; settings are environment
# variables (see the README and the Vagrantfile).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT
readonly STATE_DIR="${CLUSTER_STATE_DIR:-${ROOT}/.cluster}"
readonly KUBECONFIG_FILE="${STATE_DIR}/kubeconfig"
readonly MASTER_IP="${VAGRANT_MASTER_IP:-192.168.56.10}"
readonly PROVIDER="${VAGRANT_DEFAULT_PROVIDER:-virtualbox}"
readonly TIMEOUT="${ORCHESTRATOR_TIMEOUT:-1500}"
readonly POLL="${ORCHESTRATOR_POLL:-10}"
readonly CERT="${ROOT}/sealed-secrets/vagrant/sealing-cert.pem"
readonly SEALING_KEY="${MOVIESTREAM_KEYS_DIR:-${HOME}/.config/moviestream}/vagrant/sealing-key.pem"
readonly REPOSITORY_FILE="${ROOT}/clusters/vagrant/repository/repository.env"
readonly GATEWAY_PORT=3000
readonly ARGOCD_PORT=30443

log() {
  echo "==> $*"
}

warn() {
  echo "warning: $*" >&2
}

die() {
  echo "error: $*" >&2
  exit 1
}

usage() {
  cat <<USAGE
Usage: ./orchestrator.sh COMMAND

  create       create the VMs and K3s, install Sealed Secrets and Argo CD, deploy everything
               (safe to run again: repairs what is missing, destroys nothing)
  start        start the stopped VMs and wait until both nodes are Ready
  stop         halt the VMs (keeps them and all data)
  status       VMs, nodes, Argo CD applications and URLs
  destroy [-y] delete the VMs and their data (asks first unless -y)
  kubeconfig   write ${KUBECONFIG_FILE#"${ROOT}/"} and print how to use it
  help         this text
USAGE
}

# --- prerequisites -----------------------------------------------------------

require_tools() {
  local missing=()
  command -v vagrant >/dev/null 2>&1 || missing+=("vagrant (https://developer.hashicorp.com/vagrant/install)")
  command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (https://kubernetes.io/docs/tasks/tools/)")
  command -v git >/dev/null 2>&1 || missing+=("git")
  command -v openssl >/dev/null 2>&1 || missing+=("openssl")
  case "${PROVIDER}" in
    virtualbox)
      command -v VBoxManage >/dev/null 2>&1 || missing+=("VirtualBox (https://www.virtualbox.org/wiki/Downloads)")
      ;;
    libvirt)
      command -v virsh >/dev/null 2>&1 || missing+=("libvirt (virsh)")
      if command -v vagrant >/dev/null 2>&1 && ! vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt; then
        missing+=("the vagrant-libvirt plugin (vagrant plugin install vagrant-libvirt)")
      fi
      ;;
    *)
      die "VAGRANT_DEFAULT_PROVIDER must be virtualbox or libvirt, not ${PROVIDER}"
      ;;
  esac
  if ((${#missing[@]} > 0)); then
    echo "error: missing prerequisites:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# The controller's key must be the one that sealed sealed-secrets/vagrant.
require_sealing_key() {
  [[ -f "${CERT}" ]] || die "no ${CERT#"${ROOT}/"}; run: invoke sealing-key && invoke seal-secrets"
  if [[ ! -f "${SEALING_KEY}" ]]; then
    die "no sealing key at ${SEALING_KEY}.
The SealedSecrets in git were sealed for another key. Make your own, seal, and push:
  ./test.sh                       # once, to create .venv (or: python3 -m venv .venv && .venv/bin/pip install -r requirements/dev.txt)
  .venv/bin/invoke sealing-key --force
  .venv/bin/invoke seal-secrets
  git add sealed-secrets/vagrant && git commit -m 'Seal secrets for my cluster' && git push
then run ./orchestrator.sh create again."
  fi
  if [[ "$(openssl x509 -noout -pubkey -in "${CERT}")" != "$(openssl pkey -pubout -in "${SEALING_KEY}")" ]]; then
    die "${SEALING_KEY} does not belong to ${CERT#"${ROOT}/"}; restore the matching key, or re-key with
  .venv/bin/invoke sealing-key --force && .venv/bin/invoke seal-secrets   (then commit and push sealed-secrets/vagrant)"
  fi
}

# --- the repository Argo CD pulls from -----------------------------------------

# git@github.com:user/repo.git -> https://github.com/user/repo.git (public repositories need no credentials)
https_url() {
  local url="$1"
  if [[ "${url}" =~ ^git@([^:]+):(.+)$ ]]; then
    url="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
  fi
  echo "${url}"
}

repository_setting() {
  sed -n "s/^$1=//p" "${REPOSITORY_FILE}"
}

sync_repository_setting() {
  local origin branch url current_url current_branch updated
  origin="$(git -C "${ROOT}" remote get-url origin 2>/dev/null || true)"
  current_url="$(repository_setting REPO_URL)"
  current_branch="$(repository_setting REPO_REVISION)"
  if [[ -z "${origin}" ]]; then
    warn "no git remote 'origin'; Argo CD will pull ${current_url} (${current_branch})"
    return 0
  fi
  url="$(https_url "${origin}")"
  branch="$(git -C "${ROOT}" symbolic-ref --short -q HEAD 2>/dev/null || echo "${current_branch}")"
  [[ "${url}${branch}" =~ ^[^[:space:]|]+$ ]] || die "cannot use origin ${url} (${branch}) as Argo CD's source"
  if [[ "${url}" != "${current_url}" || "${branch}" != "${current_branch}" ]]; then
    updated="$(sed -e "s|^REPO_URL=.*|REPO_URL=${url}|" -e "s|^REPO_REVISION=.*|REPO_REVISION=${branch}|" "${REPOSITORY_FILE}")" \
      || die "could not update ${REPOSITORY_FILE}"
    printf '%s\n' "${updated}" >"${REPOSITORY_FILE}"
    warn "Argo CD now pulls ${url} (${branch}); commit and push ${REPOSITORY_FILE#"${ROOT}/"} so git says the same"
  fi
  log "Argo CD pulls ${url} (${branch})"
}

# --- cluster access ------------------------------------------------------------

write_kubeconfig() {
  local config
  mkdir -p "${STATE_DIR}"
  chmod 0700 "${STATE_DIR}"
  config="$(vagrant ssh master -c "sudo cat /etc/rancher/k3s/k3s.yaml" 2>/dev/null)" \
    || die "could not read the kubeconfig from the master VM (is it running? ./orchestrator.sh status)"
  [[ "${config}" == *"server: https://127.0.0.1:6443"* ]] || die "unexpected kubeconfig on the master VM"
  umask 077
  printf '%s\n' "${config//https:\/\/127.0.0.1:6443/https://${MASTER_IP}:6443}" | tr -d '\r' >"${KUBECONFIG_FILE}"
  export KUBECONFIG="${KUBECONFIG_FILE}"
}

use_kubeconfig() {
  [[ -f "${KUBECONFIG_FILE}" ]] || write_kubeconfig
  export KUBECONFIG="${KUBECONFIG_FILE}"
}

wait_for_nodes() {
  local deadline=$((SECONDS + TIMEOUT)) count
  log "waiting for both nodes to be Ready"
  while :; do
    count="$(kubectl get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l | tr -d ' ')"
    [[ "${count}" -ge 2 ]] && break
    ((SECONDS < deadline)) || {
      kubectl get nodes -o wide >&2 || true
      die "both nodes were not Ready within ${TIMEOUT}s"
    }
    sleep "${POLL}"
  done
  kubectl get nodes -o wide
}

# --- bootstrap -------------------------------------------------------------------

install_sealing_key() {
  log "installing the sealing key as the controller's active key"
  kubectl create secret tls sealed-secrets-key-moviestream -n kube-system \
    --cert="${CERT}" --key="${SEALING_KEY}" --dry-run=client -o yaml \
    | kubectl label --local -f - -o yaml sealedsecrets.bitnami.com/sealed-secrets-key=active \
    | kubectl apply -f -
}

install_platform() {
  log "installing the Sealed Secrets controller"
  kubectl apply --server-side --force-conflicts -k "${ROOT}/clusters/vagrant/sealed-secrets"
  log "installing Argo CD"
  kubectl apply --server-side --force-conflicts -k "${ROOT}/clusters/vagrant/argocd"
  kubectl wait --for=condition=Available deployment --all -n argocd --timeout="${TIMEOUT}s"
  log "applying the root application"
  kubectl apply -k "${ROOT}/clusters/vagrant/root"
}

applications_table() {
  kubectl get applications.argoproj.io -n argocd --no-headers \
    -o custom-columns='NAME:.metadata.name,SYNC:.status.sync.status,HEALTH:.status.health.status' 2>/dev/null
}

diagnose() {
  echo "--- applications" >&2
  kubectl get applications.argoproj.io -n argocd -o wide >&2 || true
  echo "--- application conditions" >&2
  kubectl get applications.argoproj.io -n argocd \
    -o jsonpath='{range .items[*]}{.metadata.name}{": "}{.status.conditions[*].message}{" "}{.status.operationState.message}{"\n"}{end}' >&2 || true
  echo "--- pods that are not ready" >&2
  kubectl get pods -A --field-selector=status.phase!=Succeeded -o wide 2>/dev/null | awk 'NR == 1 || $3 !~ /^([0-9]+)\/\1$/' >&2 || true
  echo "--- recent warnings" >&2
  kubectl get events -A --field-selector=type=Warning --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
}

wait_for_applications() {
  local deadline=$((SECONDS + TIMEOUT)) table pending
  log "waiting for every application to be Synced and Healthy (at most ${TIMEOUT}s)"
  while :; do
    table="$(applications_table || true)"
    pending="$(awk '$2 != "Synced" || $3 != "Healthy"' <<<"${table}")"
    if [[ -n "${table}" && -z "${pending}" && "$(wc -l <<<"${table}" | tr -d ' ')" -ge 5 ]]; then
      echo "${table}"
      return 0
    fi
    echo "[$((SECONDS))s] $(tr '\n' ' ' <<<"${pending:-waiting for applications to appear}")"
    if ((SECONDS >= deadline)); then
      diagnose
      die "not every application was Synced and Healthy within ${TIMEOUT}s (see above)"
    fi
    sleep "${POLL}"
  done
}

print_access() {
  cat <<ACCESS

Gateway:      http://${MASTER_IP}:${GATEWAY_PORT}   (API docs: http://${MASTER_IP}:${GATEWAY_PORT}/docs)
Argo CD UI:   https://${MASTER_IP}:${ARGOCD_PORT}   (user admin; self-signed certificate)
  password:   kubectl -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d
kubectl:      export KUBECONFIG=${KUBECONFIG_FILE}
ACCESS
}

# --- commands ------------------------------------------------------------------

cmd_create() {
  require_tools
  require_sealing_key
  sync_repository_setting
  log "bringing up the VMs (provisioning is idempotent)"
  vagrant up --provision
  write_kubeconfig
  wait_for_nodes
  install_sealing_key
  install_platform
  wait_for_applications
  print_access
  echo "cluster created"
}

cmd_start() {
  require_tools
  log "starting the VMs"
  vagrant up --no-provision
  write_kubeconfig
  wait_for_nodes
  print_access
  echo "cluster started"
}

cmd_stop() {
  require_tools
  log "halting the VMs (nothing is deleted)"
  vagrant halt
  echo "cluster stopped"
}

cmd_status() {
  require_tools
  vagrant status
  if [[ -f "${KUBECONFIG_FILE}" ]] && KUBECONFIG="${KUBECONFIG_FILE}" kubectl get nodes -o wide 2>/dev/null; then
    export KUBECONFIG="${KUBECONFIG_FILE}"
    echo
    kubectl get applications.argoproj.io -n argocd 2>/dev/null || echo "Argo CD is not installed yet"
    print_access
  else
    echo "The cluster's API does not answer (stopped, or not created yet)."
  fi
}

cmd_destroy() {
  local answer=""
  require_tools
  if [[ "${1:-}" != "-y" ]]; then
    [[ -t 0 ]] || die "destroy deletes the VMs and every volume; run it in a terminal, or pass -y"
    read -r -p "Delete both VMs and all their data? Type 'yes': " answer
    [[ "${answer}" == yes ]] || die "not destroyed"
  fi
  vagrant destroy -f
  rm -f "${KUBECONFIG_FILE}" "${STATE_DIR}/k3s-token"
  echo "cluster destroyed"
}

cmd_kubeconfig() {
  require_tools
  write_kubeconfig
  echo "export KUBECONFIG=${KUBECONFIG_FILE}"
}

main() {
  local command="${1:-help}"
  shift || true
  case "${command}" in
    create) cmd_create "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    destroy) cmd_destroy "$@" ;;
    kubeconfig) cmd_kubeconfig "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      echo "error: unknown command '${command}'" >&2
      exit 2
      ;;
  esac
}

cd "${ROOT}"
main "$@"
