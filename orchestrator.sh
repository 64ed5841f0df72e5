#!/usr/bin/env bash
# Creates and drives the two-node K3s cluster, and hands it to Argo CD.
# Run `./orchestrator.sh help` for the commands. Settings: environment
# variables over the defaults in clusters/vagrant/vagrant.env.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT
readonly STATE_DIR="${ROOT}/.cluster"
readonly KUBECONFIG_FILE="${STATE_DIR}/kubeconfig"
readonly JOIN_TOKEN_FILE="${STATE_DIR}/k3s-join-token"
readonly GIT_PASSWORD_FILE="${STATE_DIR}/git-password"
readonly GIT_CREDENTIALS_FILE="${STATE_DIR}/git-credentials"
readonly DEFAULTS_FILE="${ROOT}/clusters/vagrant/vagrant.env"
readonly SETTINGS_FILE="${ROOT}/clusters/vagrant/settings/cluster.env"
readonly INVOKE="${ROOT}/.venv/bin/invoke"
readonly CLUSTER=vagrant
readonly GIT_PORT=8418
readonly GIT_USER=moviestream
readonly GIT_REMOTE=cluster
readonly GATEWAY_PORT=3000
readonly ARGOCD_PORT=30443
# clusters/vagrant/observability: the NodePorts of Grafana and Headlamp.
readonly GRAFANA_PORT=30030
readonly HEADLAMP_PORT=30044
readonly OBSERVABILITY_NAMESPACE=observability
readonly HEADLAMP_VIEWER=headlamp-viewer
readonly HEADLAMP_TOKEN_DURATION=8h
readonly SECRETS_FILE="${ROOT}/.secrets/${CLUSTER}.env"
# Where the master VM keeps the state of its image builds (scripts/provision-gitserver.sh).
readonly BUILD_STATUS=/var/lib/moviestream/build-status.json
readonly TIMEOUT="${ORCHESTRATOR_TIMEOUT:-1500}"
readonly POLL="${ORCHESTRATOR_POLL:-10}"

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

  create [--repo URL|local]
               create the VMs and K3s, then deploy everything from git through Argo CD
               (safe to run again: repairs what is missing, destroys nothing). By default
               Argo CD follows the cluster's own git server and the images are built on the
               master; --repo URL follows a fork (e.g. on GitHub) instead, --repo local goes back
  start        start the stopped VMs and wait until both nodes are Ready
  stop         halt the VMs (keeps them and all data: git server, images, volumes)
  status       VMs, nodes, the git remote, the commit Argo CD synced, applications, last image build
  destroy [-y] delete the VMs and their data (asks first unless -y)
  kubeconfig   write ${KUBECONFIG_FILE#"${ROOT}/"} and print how to use it
  dashboards   every dashboard's address (Argo CD, Grafana, Headlamp) and how to sign in
  help         this text
USAGE
}

# --- settings --------------------------------------------------------------------

# VAGRANT_* from the environment, else from clusters/vagrant/vagrant.env.
setting() {
  local name="$1" value
  value="${!name:-}"
  if [[ -z "${value}" ]]; then
    value="$(sed -n "s/^${name}=//p" "${DEFAULTS_FILE}")"
  fi
  [[ -n "${value}" ]] || die "no ${name} in the environment or ${DEFAULTS_FILE#"${ROOT}/"}"
  echo "${value}"
}

MASTER_IP="$(setting VAGRANT_MASTER_IP)"
readonly MASTER_IP
readonly PROVIDER="${VAGRANT_DEFAULT_PROVIDER:-virtualbox}"
readonly GIT_URL="http://${MASTER_IP}:${GIT_PORT}/moviestream.git"
# The same server as Argo CD names it from inside the cluster ("master" is the
# node's name, which K3s's CoreDNS resolves).
readonly LOCAL_REPO_URL="http://master:${GIT_PORT}/moviestream.git"

cluster_setting() {
  sed -n "s/^$1=//p" "${SETTINGS_FILE}"
}

follows_local_git() {
  [[ "$(cluster_setting REPO_URL)" == "${LOCAL_REPO_URL}" ]]
}

# --- prerequisites ----------------------------------------------------------------

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

# .venv with the pinned tools (invoke, the Kubernetes client); ./test.sh makes it.
ensure_tools_venv() {
  [[ -x "${INVOKE}" ]] || log "setting up .venv with the pinned tools (the first time takes a few minutes)"
  "${ROOT}/test.sh" --setup-only >/dev/null || die "could not set up .venv (./test.sh --setup-only says why)"
}

# --- git: what is deployed ----------------------------------------------------------

git_root() {
  git -C "${ROOT}" "$@"
}

# A commit of ours on a machine where git has no identity yet says who made it instead of failing.
git_commit() {
  local identity=()
  if [[ -z "$(git_root config user.email || true)" ]]; then
    identity=(-c "user.name=moviestream orchestrator" -c "user.email=orchestrator@moviestream.invalid")
  fi
  git_root "${identity[@]}" commit --quiet "$@"
}

say_what_is_deployed() {
  local changes
  changes="$(git_root status --porcelain --untracked-files=no)"
  if [[ -n "${changes}" ]]; then
    warn "only commits are deployed: $(git_root log -1 --format='%h %s') goes to the cluster, not these uncommitted changes:"
    printf '%s\n' "${changes}" | sed 's/^/  /' >&2
  fi
}

# Argo CD's source: the cluster's own git server, or a URL given with --repo.
choose_repository() {
  local wanted="$1" current
  [[ -n "${wanted}" ]] || return 0
  [[ "${wanted}" == local ]] && wanted="${LOCAL_REPO_URL}"
  [[ "${wanted}" =~ ^(https?|ssh)://[^[:space:]|]+$ ]] || die "--repo takes an http(s):// or ssh:// URL, or local (got ${wanted})"
  current="$(cluster_setting REPO_URL)"
  [[ "${wanted}" != "${current}" ]] || return 0
  sed -i.bak "s|^REPO_URL=.*|REPO_URL=${wanted}|" "${SETTINGS_FILE}" && rm -f "${SETTINGS_FILE}.bak"
  git_root add -- "${SETTINGS_FILE}"
  git_commit -m "Argo CD follows ${wanted}" -- "${SETTINGS_FILE}"
  log "Argo CD now follows ${wanted} (committed ${SETTINGS_FILE#"${ROOT}/"})"
}

# Following a fork, Argo CD reads what the fork holds: it must have this
# clone's commits (the URL and the sealed secrets create commits) before the
# cluster is handed over, or the sync waits for ever on a cluster.env and
# SealedSecrets that are not there.
ensure_fork_has_head() {
  local url revision head
  url="$(cluster_setting REPO_URL)"
  revision="$(cluster_setting REPO_REVISION)"
  head="$(git_root rev-parse HEAD)"
  if git_root fetch --quiet "${url}" "refs/heads/${revision}" 2>/dev/null \
    && git_root merge-base --is-ancestor "${head}" FETCH_HEAD; then
    return 0
  fi
  die "Argo CD follows ${url} (${revision}), which does not have this clone's commit $(git_root log -1 --format='%h %s' "${head}"): git push origin ${revision} (the fork), then ./orchestrator.sh create again (it continues where it stopped)"
}

# First create: a key of this cluster's own, the secrets sealed with it, committed.
ensure_sealed_secrets() {
  log "sealing key and secrets for this cluster (plaintext stays in .secrets/, the key outside the repository)"
  (cd "${ROOT}" && "${INVOKE}" sealing-key --cluster "${CLUSTER}" && "${INVOKE}" seal-secrets --cluster "${CLUSTER}" --commit) \
    || die "could not seal the secrets (see above)"
}

# --- the cluster's git server ---------------------------------------------------------

configure_git_remote() {
  local password
  password="$(cat "${GIT_PASSWORD_FILE}")"
  umask 077
  printf 'http://%s:%s@%s:%s\n' "${GIT_USER}" "${password}" "${MASTER_IP}" "${GIT_PORT}" >"${GIT_CREDENTIALS_FILE}"
  if git_root remote get-url "${GIT_REMOTE}" >/dev/null 2>&1; then
    git_root remote set-url "${GIT_REMOTE}" "${GIT_URL}"
  else
    git_root remote add "${GIT_REMOTE}" "${GIT_URL}"
  fi
  # The credential stays in .cluster/, used for this server only: the empty helper first
  # clears the ones configured elsewhere (a keychain would keep a copy).
  git_root config --replace-all "credential.http://${MASTER_IP}:${GIT_PORT}.helper" ""
  git_root config --add "credential.http://${MASTER_IP}:${GIT_PORT}.helper" "store --file='${GIT_CREDENTIALS_FILE}'"
}

# Push this checkout's commit as the cluster's main, unless the cluster has it already.
push_to_cluster() {
  local head remote_main
  head="$(git_root rev-parse HEAD)"
  git_root fetch --quiet "${GIT_REMOTE}" || die "cannot reach the cluster's git server at ${GIT_URL}"
  remote_main="$(git_root rev-parse --verify --quiet "refs/remotes/${GIT_REMOTE}/main" || true)"
  if [[ -n "${remote_main}" ]] && git_root merge-base --is-ancestor "${head}" "${remote_main}"; then
    log "the cluster's main already holds $(git_root log -1 --format='%h %s' "${head}")"
    return 0
  fi
  if [[ -n "${remote_main}" ]] && ! git_root merge-base --is-ancestor "${remote_main}" "${head}"; then
    die "the cluster's main has commits this checkout lacks (image promotions, or another clone's pushes).
Run: git pull ${GIT_REMOTE} main   then ./orchestrator.sh create again"
  fi
  log "pushing $(git_root log -1 --format='%h %s') to the cluster (git push ${GIT_REMOTE} HEAD:main)"
  git_root push --quiet "${GIT_REMOTE}" "HEAD:refs/heads/main"
}

build_status() {
  vagrant ssh master -c "sudo cat ${BUILD_STATUS} 2>/dev/null" 2>/dev/null | tr -d '\r'
}

# A field of the build status JSON, or empty.
status_field() {
  "${ROOT}/.venv/bin/python" -c 'import json, sys
try:
    print(json.loads(sys.stdin.read()).get(sys.argv[1]) or "")
except ValueError:
    print("")' "$1"
}

# The images of the cluster's main are built and promoted (the master builds
# after every push; a promotion is one more commit on main).
wait_for_images() {
  local deadline=$((SECONDS + TIMEOUT)) status commit state started main last="" retried=""
  log "waiting for the images of the cluster's main to be built on the master (log: ./orchestrator.sh status)"
  while :; do
    git_root fetch --quiet "${GIT_REMOTE}" || true
    main="$(git_root rev-parse --verify --quiet "refs/remotes/${GIT_REMOTE}/main" || true)"
    status="$(build_status || true)"
    commit="$(status_field commit <<<"${status}")"
    state="$(status_field state <<<"${status}")"
    started="$(status_field started <<<"${status}")"
    if [[ "${commit}:${state}:${started}" != "${last}" ]]; then
      echo "[$((SECONDS))s] build of ${commit:0:12}: ${state:-not started}"
      last="${commit}:${state}:${started}"
    fi
    if [[ -n "${main}" && "${commit}" == "${main}" && "${state}" == succeeded ]]; then
      break
    fi
    # A failed build of main (a download that timed out, ...) is built once more; a failed
    # build of an older commit only means main's own build is still to come.
    if [[ -n "${main}" && "${commit}" == "${main}" && "${state}" == failed ]]; then
      if [[ -z "${retried}" ]]; then
        log "the build of ${main:0:12} failed; building it once more (moviestream-builds retry)"
        vagrant ssh master -c "sudo moviestream-builds retry" >/dev/null || die "could not queue the build again"
        retried="${started}"
      elif [[ "${started}" != "${retried}" ]]; then
        vagrant ssh master -c "sudo tail -n 40 $(status_field log <<<"${status}")" >&2 2>/dev/null || true
        die "the image build of ${commit:0:12} failed twice (log above); nothing was promoted"
      fi
    fi
    ((SECONDS < deadline)) || die "the images were not built within ${TIMEOUT}s (./orchestrator.sh status shows the build)"
    sleep "${POLL}"
  done
  if [[ "$(git_root rev-parse HEAD)" != "${main}" ]]; then
    log "the cluster committed the new image tags on top: git pull ${GIT_REMOTE} main brings them here"
  fi
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

# The server writes K10<CA hash>::server:<secret>; the agent joins with it, so it checks the CA.
read_join_token() {
  local token
  token="$(vagrant ssh master -c "sudo cat /var/lib/rancher/k3s/server/token" 2>/dev/null | tr -d '\r\n')"
  [[ "${token}" == K10*::* ]] || die "the master has no K3s join token yet (see the provisioning output above)"
  mkdir -p "${STATE_DIR}"
  umask 077
  printf '%s\n' "${token}" >"${JOIN_TOKEN_FILE}"
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

print_access() {
  cat <<ACCESS

Gateway:      http://${MASTER_IP}:${GATEWAY_PORT}   (API docs: http://${MASTER_IP}:${GATEWAY_PORT}/docs)
kubectl:      export KUBECONFIG=${KUBECONFIG_FILE}
Argo CD UI:   https://${MASTER_IP}:${ARGOCD_PORT}   (user admin; self-signed certificate)
  password:   kubectl -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d
Dashboards:   ./orchestrator.sh dashboards   (Grafana, Headlamp: addresses and sign-in)
ACCESS
  if follows_local_git; then
    cat <<GIT
Deploy:       git push ${GIT_REMOTE} main   (${GIT_URL}; then git pull ${GIT_REMOTE} main for the image tags)
GIT
  fi
}

# --- commands ------------------------------------------------------------------

cmd_create() {
  local repo=""
  while (($# > 0)); do
    case "$1" in
      --repo)
        (($# >= 2)) || die "--repo needs a URL, or local"
        repo="$2"
        shift 2
        ;;
      *) die "create: unknown option $1 (see ./orchestrator.sh help)" ;;
    esac
  done
  require_tools
  ensure_tools_venv
  choose_repository "${repo}"
  ensure_sealed_secrets
  say_what_is_deployed
  follows_local_git || ensure_fork_has_head
  log "bringing up the master VM (provisioning is idempotent)"
  vagrant up master --provision --provider "${PROVIDER}"
  read_join_token
  log "bringing up the agent VM"
  vagrant up agent --provision --provider "${PROVIDER}"
  write_kubeconfig
  wait_for_nodes
  if follows_local_git; then
    configure_git_remote
    push_to_cluster
    wait_for_images
  else
    log "Argo CD follows $(cluster_setting REPO_URL) ($(cluster_setting REPO_REVISION)); images come from its workflow"
  fi
  log "handing the cluster to Argo CD (invoke bootstrap)"
  (cd "${ROOT}" && "${INVOKE}" bootstrap --cluster "${CLUSTER}" --kubeconfig "${KUBECONFIG_FILE}" --timeout "${TIMEOUT}") \
    || die "the bootstrap did not finish (see above); ./orchestrator.sh create continues from where it stopped"
  print_access
  echo "cluster created"
}

cmd_start() {
  require_tools
  log "starting the VMs"
  vagrant up --no-provision --provider "${PROVIDER}"
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

status_git() {
  local url main
  url="$(git_root config --get "remote.${GIT_REMOTE}.url" || true)"
  echo "Argo CD follows: $(cluster_setting REPO_URL) ($(cluster_setting REPO_REVISION))"
  if follows_local_git && [[ -n "${url}" ]]; then
    echo "git remote:      ${GIT_REMOTE} ${url}"
    main="$(git_root ls-remote "${GIT_REMOTE}" refs/heads/main 2>/dev/null)" || main=unreachable
    echo "cluster's main:  ${main:0:12}"
  fi
}

status_build() {
  local status
  follows_local_git || return 0
  status="$(build_status || true)"
  if [[ -z "${status}" ]]; then
    echo "image builds:    none yet"
    return 0
  fi
  echo "last image build: $(status_field commit <<<"${status}" | cut -c1-12) $(status_field state <<<"${status}")"
  echo "  log:   vagrant ssh master -c 'sudo cat $(status_field log <<<"${status}")'"
  echo "  live:  vagrant ssh master -c 'sudo journalctl -u moviestream-build -f'"
}

cmd_status() {
  require_tools
  vagrant status
  status_git
  if [[ -f "${KUBECONFIG_FILE}" ]] && KUBECONFIG="${KUBECONFIG_FILE}" kubectl get nodes -o wide 2>/dev/null; then
    export KUBECONFIG="${KUBECONFIG_FILE}"
    echo
    echo "synced commit:   $(kubectl -n argocd get applications.argoproj.io root -o jsonpath='{.status.sync.revision}' 2>/dev/null | cut -c1-12)"
    kubectl get applications.argoproj.io -n argocd 2>/dev/null || echo "Argo CD is not installed yet"
    status_build
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
  rm -f "${KUBECONFIG_FILE}" "${STATE_DIR}/k3s-token" "${JOIN_TOKEN_FILE}" "${GIT_PASSWORD_FILE}" "${GIT_CREDENTIALS_FILE}"
  echo "cluster destroyed"
}

cmd_kubeconfig() {
  require_tools
  write_kubeconfig
  echo "export KUBECONFIG=${KUBECONFIG_FILE}"
}

# --- dashboards ----------------------------------------------------------------

# Grafana's admin user or password (KEY admin-user or admin-password) as the
# cluster Secret holds it (sealed from .secrets/); the local file's VARIABLE is
# the fallback when the Secret cannot be read.
grafana_admin() {
  local key="$1" variable="$2" value
  if value="$(kubectl -n "${OBSERVABILITY_NAMESPACE}" get secret grafana-admin \
    -o go-template="{{index .data \"${key}\" | base64decode}}" 2>/dev/null)" && [[ -n "${value}" ]]; then
    echo "${value}"
    return
  fi
  value="$(sed -n "s/^${variable}=//p" "${SECRETS_FILE}" 2>/dev/null || true)"
  [[ -n "${value}" ]] || return 1
  echo "${value}   (from ${SECRETS_FILE#"${ROOT}/"}: the cluster's Secret could not be read)"
}

cmd_dashboards() {
  local token user password
  command -v kubectl >/dev/null 2>&1 || die "missing prerequisite: kubectl (https://kubernetes.io/docs/tasks/tools/)"
  [[ -f "${KUBECONFIG_FILE}" ]] || die "no ${KUBECONFIG_FILE#"${ROOT}/"}: run ./orchestrator.sh kubeconfig (or create) first"
  export KUBECONFIG="${KUBECONFIG_FILE}"
  # A short-lived token of the read-only account: never a cluster-admin one.
  # Only the token is captured: kubectl's error, if any, goes to the terminal as it is.
  if ! token="$(kubectl -n "${OBSERVABILITY_NAMESPACE}" create token "${HEADLAMP_VIEWER}" \
    --duration "${HEADLAMP_TOKEN_DURATION}")"; then
    die "no token for ServiceAccount ${OBSERVABILITY_NAMESPACE}/${HEADLAMP_VIEWER} (kubectl's error above): if the cluster answers, Argo CD has not synced the observability Application yet (./orchestrator.sh status)"
  fi
  user="$(grafana_admin admin-user GRAFANA_ADMIN_USER)" || user="admin"
  password="$(grafana_admin admin-password GRAFANA_ADMIN_PASSWORD)" \
    || password="unknown: neither Secret ${OBSERVABILITY_NAMESPACE}/grafana-admin nor ${SECRETS_FILE#"${ROOT}/"} holds it"
  cat <<DASHBOARDS
Argo CD:   https://${MASTER_IP}:${ARGOCD_PORT}   (self-signed certificate)
  user:      admin
  password:  kubectl -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d
Grafana:   http://${MASTER_IP}:${GRAFANA_PORT}   (dashboards "moviestream" and "moviestream logs")
  user:      ${user}
  password:  ${password}
Headlamp:  http://${MASTER_IP}:${HEADLAMP_PORT}
  token (read-only, valid ${HEADLAMP_TOKEN_DURATION}; run this again for a new one):
${token}
DASHBOARDS
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
    dashboards) cmd_dashboards "$@" ;;
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
