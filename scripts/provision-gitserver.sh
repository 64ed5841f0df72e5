#!/usr/bin/env bash
# Provisions the master's git server, image registry and image builder; run by Vagrant as root,
# safe to run again (a new GIT_PASSWORD replaces the old one; the repository and images stay).
#   MASTER_IP            the master's host-only address: the only one nginx listens on
#   HOST_NETWORK_CIDR    the host-only network, e.g. 192.168.56.0/24: may fetch, and push with the password
#                        (default: the network the kernel routes on MASTER_IP's interface)
#   GIT_PASSWORD         the push password of user moviestream (orchestrator.sh keeps it in .cluster/)
#   ARGOCD_WEBHOOK_URL   where the post-receive hook tells Argo CD, e.g. https://192.168.56.10:30443/api/webhook
#                        (empty: no webhook; Argo CD finds new commits when it polls)
#   REPO_URL_IN_CLUSTER  the repository URL Argo CD follows, e.g. http://192.168.56.10:8418/moviestream.git
#   GITSERVER_FILES      where Vagrant uploaded scripts/gitserver (default /tmp/moviestream-gitserver)
#
# `provision-gitserver.sh git-server` sets up the git server alone (CI's runner, GITSERVER_FILES=scripts/gitserver).
# `provision-gitserver.sh render FILE` prints one of scripts/gitserver's templates filled in, and
# `write-credential` and `init-repository` do just that step: the tests run them on scratch paths
# (every path below can be moved with its environment variable), as provisioning runs them here.
set -euo pipefail

readonly UPLOAD="${GITSERVER_FILES:-/tmp/moviestream-gitserver}"
# An upload into a copy that a failed run left behind lands one level down (scp -r): take that one.
if [[ -d "${UPLOAD}/gitserver" ]]; then
  readonly FILES="${UPLOAD}/gitserver"
else
  readonly FILES="${UPLOAD}"
fi
readonly LIB_DIR="${MOVIESTREAM_LIB:-/usr/local/lib/moviestream}"
readonly ETC_DIR="${MOVIESTREAM_ETC:-/etc/moviestream}"
readonly GIT_ROOT="${MOVIESTREAM_GIT_ROOT:-/srv/git}"
readonly REPOSITORY="${GIT_ROOT}/moviestream.git"
readonly SPOOL_DIR="${MOVIESTREAM_SPOOL:-/var/spool/moviestream}"
readonly STATE_DIR="${MOVIESTREAM_STATE:-/var/lib/moviestream}"
readonly LOG_DIR="${MOVIESTREAM_LOGS:-/var/log/moviestream/builds}"
readonly WEB_USER="${MOVIESTREAM_WEB_USER:-www-data}"
readonly HTPASSWD="${ETC_DIR}/git.htpasswd"
readonly GIT_PORT="${MOVIESTREAM_GIT_PORT:-8418}"
readonly REGISTRY_PORT="${MOVIESTREAM_REGISTRY_PORT:-5000}"
readonly LISTEN_ADDRESS="${MASTER_IP:-}"
readonly REPO_URL="${REPO_URL_IN_CLUSTER:-}"
readonly WEBHOOK_URL="${ARGOCD_WEBHOOK_URL:-}"
# Named only by the templates. IMAGE_PREFIX is what git names the images by: the nodes' K3s
# mirrors registry.moviestream.internal to this registry (REGISTRY_PORT) for them.
# shellcheck disable=SC2034  # render() reads these by name
declare -r REGISTRY_UPSTREAM="${MOVIESTREAM_REGISTRY_UPSTREAM:-127.0.0.1:5001}" \
  FCGIWRAP_SOCKET="${MOVIESTREAM_FCGIWRAP_SOCKET:-/run/fcgiwrap.socket}" \
  GIT_HTTP_BACKEND=/usr/lib/git-core/git-http-backend \
  POD_NETWORK_CIDR=10.42.0.0/16 \
  IMAGE_PREFIX=registry.moviestream.internal/moviestream \
  OVERLAY=overlays/vagrant \
  PYTHON=/usr/bin/python3.11
# What a template may name: @GIT_PORT@ becomes the value of GIT_PORT.
readonly TEMPLATE_SETTINGS=(
  LISTEN_ADDRESS GIT_PORT REGISTRY_PORT REGISTRY_UPSTREAM HOST_NETWORK_CIDR POD_NETWORK_CIDR HTPASSWD
  FCGIWRAP_SOCKET GIT_HTTP_BACKEND GIT_ROOT REPOSITORY SPOOL_DIR STATE_DIR LOG_DIR LIB_DIR ETC_DIR IMAGE_PREFIX
  OVERLAY PYTHON
)
# Ubuntu 22.04 (jammy) packages. Exact where jammy has had one version (fcgiwrap, buildah);
# the release's upstream version where its security updates move the Ubuntu revision.
# docker-registry and runc are left to jammy's current version.
readonly PACKAGES=(
  "nginx=1.18.0-6ubuntu14*"
  "fcgiwrap=1.1.0-12"
  "git=1:2.34.1-*"
  "buildah=1.23.1+ds1-2"
  runc
  docker-registry
  "python3.11=3.11.0~rc1-1~22.04*"
  "python3.11-venv=3.11.0~rc1-1~22.04*"
)

log() {
  echo "[provision gitserver] $*"
}

die() {
  echo "[provision gitserver] error: $*" >&2
  exit 1
}

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "${name} is not set"
  done
}

# HOST_NETWORK_CIDR, else the network of the link route whose source is MASTER_IP.
resolve_host_network() {
  if [[ -z "${HOST_NETWORK_CIDR:-}" ]]; then
    HOST_NETWORK_CIDR="$(ip -o -4 route show proto kernel scope link \
      | awk -v ip="${LISTEN_ADDRESS}" '{ for (i = 1; i < NF; i++) if ($i == "src" && $(i + 1) == ip) { print $1; exit } }')"
    [[ -n "${HOST_NETWORK_CIDR}" ]] || die "no network route has the source ${LISTEN_ADDRESS}: set HOST_NETWORK_CIDR"
  fi
}

check_addresses() {
  local octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
  local ipv4="${octet}\.${octet}\.${octet}\.${octet}"
  [[ "${LISTEN_ADDRESS}" =~ ^${ipv4}$ ]] || die "MASTER_IP must be an IPv4 address, not '${LISTEN_ADDRESS}'"
  resolve_host_network
  [[ "${HOST_NETWORK_CIDR:-}" =~ ^${ipv4}/([0-9]|[12][0-9]|3[0-2])$ ]] \
    || die "HOST_NETWORK_CIDR must look like 192.168.56.0/24, not '${HOST_NETWORK_CIDR:-}'"
}

# Prints scripts/gitserver/FILE with each @SETTING@ replaced; refuses one it cannot fill.
render() {
  local template="${FILES}/$1" name value output
  local expressions=(-e '')
  [[ -f "${template}" ]] || die "no template ${template}"
  for name in "${TEMPLATE_SETTINGS[@]}"; do
    grep -q "@${name}@" "${template}" || continue
    value="${!name:-}"
    [[ -n "${value}" ]] || die "$1 needs ${name}, which is not set"
    case "${value}" in
      *'|'* | *\\* | *'&'* | *$'\n'*) die "${name} holds a character that cannot go into $1: '${value}'" ;;
    esac
    expressions+=(-e "s|@${name}@|${value}|g")
  done
  output="$(sed "${expressions[@]}" "${template}")"
  if [[ "${output}" =~ @[A-Z_]+@ ]]; then
    die "$1 names ${BASH_REMATCH[0]}, a setting this script does not know"
  fi
  printf '%s\n' "${output}"
}

write_credential() {
  local hash temporary
  require GIT_PASSWORD
  [[ "${#GIT_PASSWORD}" -ge 16 ]] || die "GIT_PASSWORD must be at least 16 characters"
  # Only the hash is kept, in the format nginx's auth_basic reads (apr1, as htpasswd makes).
  hash="$(openssl passwd -apr1 -stdin <<<"${GIT_PASSWORD}")"
  install -d -m 0755 "${ETC_DIR}"
  temporary="$(mktemp "${HTPASSWD}.XXXXXX")"
  printf 'moviestream:%s\n' "${hash}" >"${temporary}"
  chgrp "$(id -gn "${WEB_USER}")" "${temporary}"
  chmod 0640 "${temporary}"
  mv -f "${temporary}" "${HTPASSWD}"
  log "push credential for user moviestream written to ${HTPASSWD}"
}

# The bare repository, its settings and its hooks; the queue and log directories the hooks write.
init_repository() {
  local hook
  require REPO_URL
  install -d -m 0755 "${LIB_DIR}/hooks" "${GIT_ROOT}"
  for hook in pre-receive post-receive; do
    install -m 0755 "${FILES}/githooks.py" "${LIB_DIR}/hooks/${hook}"
  done
  install -d -o "${WEB_USER}" -g "$(id -gn "${WEB_USER}")" -m 0755 "${SPOOL_DIR}"
  install -d -m 0755 "${LOG_DIR}"
  if [[ ! -d "${REPOSITORY}" ]]; then
    log "creating ${REPOSITORY}"
    # Group-shared: the web server's pushes and the deployer's (as root) write the same objects.
    git init --quiet --bare --shared=group --initial-branch=main "${REPOSITORY}"
  fi
  git_config receive.denyNonFastForwards true
  git_config receive.denyDeletes true
  git_config receive.fsckObjects true
  git_config core.hooksPath "${LIB_DIR}/hooks"
  git_config moviestream.repoURL "${REPO_URL}"
  git_config moviestream.buildQueue "${SPOOL_DIR}/build-queue"
  git_config moviestream.buildLogs "${LOG_DIR}"
  if [[ -n "${WEBHOOK_URL}" ]]; then
    git_config moviestream.argocdWebhook "${WEBHOOK_URL}"
  else
    git --git-dir="${REPOSITORY}" config --unset-all moviestream.argocdWebhook || true
  fi
  chown -R "${WEB_USER}:" "${REPOSITORY}"
}

git_config() {
  git --git-dir="${REPOSITORY}" config "$1" "$2"
}

install_packages() {
  if ! dpkg -s "${PACKAGES[@]%%=*}" >/dev/null 2>&1; then
    log "installing ${PACKAGES[*]}"
    # A fresh box's unattended upgrades may hold the package lock for a while.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${PACKAGES[@]}"
  fi
}

# The registry listens on loopback only; nginx shows it read-only to the nodes.
configure_registry() {
  install -d -m 0755 "${ETC_DIR}" /etc/systemd/system/docker-registry.service.d
  render registry.yml >"${ETC_DIR}/registry.yml"
  render docker-registry.conf >/etc/systemd/system/docker-registry.service.d/moviestream.conf
  systemctl daemon-reload
  systemctl enable docker-registry.service
  systemctl restart docker-registry.service
}

install_builder() {
  install -d -m 0755 "${LIB_DIR}" "${STATE_DIR}" /etc/containers/registries.conf.d
  install -m 0644 "${FILES}/containers-registries.conf" /etc/containers/registries.conf.d/moviestream.conf
  install -m 0755 "${FILES}/deployer.py" "${LIB_DIR}/deployer.py"
  ln -sfn "${LIB_DIR}/deployer.py" /usr/local/bin/moviestream-builds
  render deployer.env >"${ETC_DIR}/deployer.env"
  render moviestream-build.service >/etc/systemd/system/moviestream-build.service
  render moviestream-build.path >/etc/systemd/system/moviestream-build.path
  systemctl daemon-reload
  systemctl enable --now moviestream-build.path
}

configure_nginx() {
  # The host-only address may come up after nginx at boot; let nginx bind to it anyway.
  echo "net.ipv4.ip_nonlocal_bind = 1" >/etc/sysctl.d/60-moviestream-gitserver.conf
  sysctl --quiet --load=/etc/sysctl.d/60-moviestream-gitserver.conf
  render nginx-site.conf >/etc/nginx/sites-available/moviestream
  ln -sfn /etc/nginx/sites-available/moviestream /etc/nginx/sites-enabled/moviestream
  # Debian's default site listens on every interface.
  rm -f /etc/nginx/sites-enabled/default
  nginx -t -q
  systemctl enable --now fcgiwrap.socket nginx.service
  systemctl reload nginx.service
}

# git refuses to work in a repository another user owns unless told; root's deployer pushes here.
trust_repository() {
  if ! git config --system --get-all safe.directory | grep -xF "${REPOSITORY}" >/dev/null; then
    git config --system --add safe.directory "${REPOSITORY}"
  fi
}

provision() {
  require MASTER_IP GIT_PASSWORD REPO_URL_IN_CLUSTER
  check_addresses
  [[ -d "${FILES}" ]] || die "${FILES} is missing: upload scripts/gitserver there first"
  install_packages
  configure_registry
  write_credential
  init_repository
  trust_repository
  install_builder
  configure_nginx
  # Vagrant's next upload must not land inside an old copy.
  rm -rf "${UPLOAD}"
  log "git: http://${MASTER_IP}:${GIT_PORT}/moviestream.git  registry (read-only): ${MASTER_IP}:${REGISTRY_PORT}"
}

# The git server alone, where images are built elsewhere (the e2e job's runner, which builds them
# with Docker): the same site, repository, hooks and credential, no registry and no builder.
provision_git_server() {
  require MASTER_IP GIT_PASSWORD REPO_URL_IN_CLUSTER
  check_addresses
  [[ -d "${FILES}" ]] || die "${FILES} is missing: upload scripts/gitserver there first"
  if ! dpkg -s nginx fcgiwrap >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends nginx fcgiwrap
  fi
  write_credential
  init_repository
  trust_repository
  configure_nginx
  log "git: http://${MASTER_IP}:${GIT_PORT}/moviestream.git"
}

main() {
  case "${1:-provision}" in
    provision) provision ;;
    git-server) provision_git_server ;;
    render)
      [[ -n "${2:-}" ]] || die "usage: $0 render FILE"
      if [[ "$2" == nginx-site.conf ]]; then
        check_addresses
      fi
      render "$2"
      ;;
    write-credential) write_credential ;;
    init-repository) init_repository ;;
    *) die "unknown command '$1' (provision, git-server, render FILE, write-credential, init-repository)" ;;
  esac
}

main "$@"
