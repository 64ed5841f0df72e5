#!/usr/bin/env bash
# Provisions one VM of the cluster; run by Vagrant as root, safe to run again.
#   ROLE         server | agent
#   NODE_IP      this node's private-network address
#   MASTER_IP    the server's private-network address
#   K3S_VERSION  exact K3s release, e.g. v1.34.9+k3s1
#   K3S_TOKEN    the cluster's join token
set -euo pipefail

readonly NFS_EXPORT=/srv/nfs/k8s

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
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
  fi
}

# The shared StorageClass keeps volumes here, so a pod moved to the other
# node finds its data.
export_nfs() {
  local subnet="${NODE_IP%.*}.0/24"
  mkdir -p "${NFS_EXPORT}"
  chmod 0777 "${NFS_EXPORT}"
  echo "${NFS_EXPORT} ${subnet}(rw,sync,no_subtree_check,no_root_squash)" >/etc/exports.d/moviestream.exports
  exportfs -ra
  systemctl enable --now nfs-kernel-server
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
  local interface exec_args
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
  curl -sfL "https://raw.githubusercontent.com/k3s-io/k3s/${K3S_VERSION}/install.sh" -o /tmp/k3s-install.sh
  INSTALL_K3S_VERSION="${K3S_VERSION}" K3S_TOKEN="${K3S_TOKEN}" \
    K3S_URL="$([[ "${ROLE}" == agent ]] && echo "https://${MASTER_IP}:6443")" \
    INSTALL_K3S_EXEC="${exec_args}" sh /tmp/k3s-install.sh
}

main() {
  require_settings
  install_packages
  if [[ "${ROLE}" == server ]]; then
    export_nfs
  fi
  install_k3s
  log "done"
}

main "$@"
