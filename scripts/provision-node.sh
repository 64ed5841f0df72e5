#!/usr/bin/env bash
# Provisions one VM of the cluster; run by Vagrant as root, safe to run again.
#   ROLE         server | agent
#   NODE_IP      this node's private-network address
#   MASTER_IP    the server's private-network address
#   K3S_VERSION  exact K3s release, e.g. v1.34.12+k3s1
#   K3S_TOKEN    server: the cluster's secret; agent: the full token the server
#                wrote (K10<CA hash>::server:<secret>), so the agent checks
#                the server's CA before it trusts it
# PROVISION_ROOT (tests only) puts every file this script writes under another root.
set -euo pipefail

readonly FS="${PROVISION_ROOT:-}"
readonly NFS_EXPORT=/srv/nfs/k8s
# Names the cluster uses for the master's services, resolved on both nodes
# from /etc/hosts (the kubelet mounts NFS volumes, containerd pulls images).
readonly NFS_NAME=nfs.moviestream.internal
readonly REGISTRY_NAME=registry.moviestream.internal
readonly REGISTRY_PORT=5000
readonly REGISTRIES_FILE="${FS}/etc/rancher/k3s/registries.yaml"

log() {
  echo "[provision ${ROLE:-?}] $*"
}

die() {
  echo "[provision ${ROLE:-?}] error: $*" >&2
  exit 1
}

require_settings() {
  local name
  for name in ROLE NODE_IP MASTER_IP K3S_VERSION K3S_TOKEN; do
    [[ -n "${!name:-}" ]] || die "${name} is not set"
  done
  [[ "${ROLE}" == server || "${ROLE}" == agent ]] || die "ROLE must be server or agent, not ${ROLE}"
  if [[ "${ROLE}" == agent && "${K3S_TOKEN}" != K10*::* ]]; then
    die "the agent needs the server's full join token (K10<CA hash>::...); ./orchestrator.sh create reads it from the master"
  fi
}

# The interface that holds NODE_IP: the private network, whatever the
# provider names it (eth1, enp0s8, ...). Flannel must use it, not the NAT one.
interface_for_ip() {
  local ip="$1" interface
  interface="$(ip -o -4 addr show | awk -v ip="${ip}" '{ split($4, a, "/"); if (a[1] == ip) print $2 }' | head -n 1)"
  [[ -n "${interface}" ]] || die "no interface has the address ${ip}"
  echo "${interface}"
}

install_packages() {
  local packages=(curl nfs-common)
  if [[ "${ROLE}" == server ]]; then
    packages+=(nfs-kernel-server)
  fi
  if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    log "installing ${packages[*]}"
    # A fresh box's unattended upgrades may hold the package lock for a while.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${packages[@]}"
  fi
}

# The network (a.b.c.d/prefix) that holds an address, from its interface.
network_of_ip() {
  local ip="$1" cidr prefix a b c d mask network
  cidr="$(ip -o -4 addr show | awk -v ip="${ip}" '{ split($4, a, "/"); if (a[1] == ip) print $4 }' | head -n 1)"
  [[ -n "${cidr}" ]] || die "no interface has the address ${ip}"
  prefix="${cidr#*/}"
  IFS=. read -r a b c d <<<"${ip}"
  mask=$(((0xffffffff << (32 - prefix)) & 0xffffffff))
  network=$((((a << 24) | (b << 16) | (c << 8) | d) & mask))
  echo "$((network >> 24 & 255)).$((network >> 16 & 255)).$((network >> 8 & 255)).$((network & 255))/${prefix}"
}

# The shared StorageClass keeps volumes here, so a pod moved to the other
# node finds its data. Only the private network may mount it.
export_nfs() {
  local network
  network="$(network_of_ip "${NODE_IP}")"
  # nfs-kernel-server does not create /etc/exports.d.
  mkdir -p "${FS}${NFS_EXPORT}" "${FS}/etc/exports.d"
  chmod 0777 "${FS}${NFS_EXPORT}"
  echo "${NFS_EXPORT} ${network}(rw,sync,no_subtree_check,no_root_squash)" >"${FS}/etc/exports.d/moviestream.exports"
  exportfs -ra
  systemctl enable --now nfs-kernel-server
}

# One line per name, rewritten on every run (the master's address may change).
name_the_master() {
  local name
  for name in "${NFS_NAME}" "${REGISTRY_NAME}"; do
    sed -i "/[[:space:]]${name//./\\.}\$/d" "${FS}/etc/hosts"
    echo "${MASTER_IP} ${name}" >>"${FS}/etc/hosts"
  done
}

# containerd pulls registry.moviestream.internal/... from the registry on
# the master (read-only for the nodes, plain HTTP on the private network).
# K3s reads this file when it starts.
write_registries() {
  local wanted
  wanted="mirrors:
  \"${REGISTRY_NAME}\":
    endpoint:
      - \"http://${MASTER_IP}:${REGISTRY_PORT}\""
  mkdir -p "$(dirname "${REGISTRIES_FILE}")"
  if [[ ! -f "${REGISTRIES_FILE}" || "$(cat "${REGISTRIES_FILE}")" != "${wanted}" ]]; then
    echo "${wanted}" >"${REGISTRIES_FILE}"
    REGISTRIES_CHANGED=1
  fi
}

restart_k3s_if_registries_changed() {
  local unit
  [[ "${REGISTRIES_CHANGED:-0}" == 1 ]] || return 0
  unit="$([[ "${ROLE}" == server ]] && echo k3s || echo k3s-agent)"
  if systemctl is-active --quiet "${unit}"; then
    log "restarting ${unit}: its registry mirrors changed"
    systemctl restart "${unit}"
  fi
}

installed_version() {
  if command -v k3s >/dev/null 2>&1; then
    k3s --version | awk 'NR == 1 { print $3 }'
  fi
}

wait_for_server() {
  local attempt
  for attempt in $(seq 1 60); do
    if curl -ksf "https://${MASTER_IP}:6443/ping" >/dev/null; then
      return 0
    fi
    log "waiting for the server's API at ${MASTER_IP}:6443 (${attempt}/60)"
    sleep 5
  done
  die "the K3s server at ${MASTER_IP}:6443 did not answer"
}

install_k3s() {
  local interface exec_args installer
  interface="$(interface_for_ip "${NODE_IP}")"
  if [[ "$(installed_version)" == "${K3S_VERSION}" ]]; then
    log "K3s ${K3S_VERSION} already installed"
    return 0
  fi
  if [[ "${ROLE}" == server ]]; then
    exec_args="server --node-ip ${NODE_IP} --advertise-address ${NODE_IP} --tls-san ${NODE_IP}"
    exec_args+=" --flannel-iface ${interface} --disable traefik --write-kubeconfig-mode 0600"
  else
    wait_for_server
    exec_args="agent --node-ip ${NODE_IP} --flannel-iface ${interface}"
  fi
  log "installing K3s ${K3S_VERSION} as ${ROLE} on ${interface} (${NODE_IP})"
  # The installer of the pinned release, not the floating one.
  installer="$(mktemp)"
  curl -sfL "https://raw.githubusercontent.com/k3s-io/k3s/${K3S_VERSION}/install.sh" -o "${installer}"
  INSTALL_K3S_VERSION="${K3S_VERSION}" K3S_TOKEN="${K3S_TOKEN}" \
    K3S_URL="$([[ "${ROLE}" == agent ]] && echo "https://${MASTER_IP}:6443")" \
    INSTALL_K3S_EXEC="${exec_args}" sh "${installer}"
  rm -f "${installer}"
}

main() {
  require_settings
  install_packages
  name_the_master
  write_registries
  if [[ "${ROLE}" == server ]]; then
    export_nfs
  fi
  restart_k3s_if_registries_changed
  install_k3s
  log "done"
}

main "$@"
