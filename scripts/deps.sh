#!/usr/bin/env bash
# Installs the Debian 12 packages keygate needs, but only those that are missing.
#
#   scripts/deps.sh [build] [peers] [all]      (no argument: all)
#
#   build: toolchain and libraries to compile keygate and its tests
#   peers: the real programs the tests and scripts/run talk to (redis, redis-cli, twemproxy,
#          redis-py for the integration tests; prometheus for promtool and python3-yaml,
#          which check the alert rules in deploy/prometheus/; its service need not run)
#
# Checks with dpkg-query first and touches apt only when something is missing, so a machine
# that already has everything never needs the network. Works as root; otherwise uses sudo
# when it is available. Used by scripts/run and scripts/test (also fine to source and call
# keygate_install_deps yourself).

keygate_build_packages=(
  g++ cmake make pkg-config
  libboost-dev libhiredis-dev libyaml-cpp-dev prometheus-cpp-dev libspdlog-dev
  libssl-dev openssl
  catch2 libbenchmark-dev
)
keygate_peer_packages=(
  redis-server redis-tools nutcracker python3 python3-redis python3-yaml prometheus
)

keygate_missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

keygate_install_deps() {
  local wanted=() group
  [[ $# -eq 0 ]] && set -- all
  for group in "$@"; do
    case "$group" in
      build) wanted+=("${keygate_build_packages[@]}") ;;
      peers) wanted+=("${keygate_peer_packages[@]}") ;;
      all) wanted+=("${keygate_build_packages[@]}" "${keygate_peer_packages[@]}") ;;
      *) echo "deps.sh: unknown group '$group' (use build, peers or all)" >&2; return 2 ;;
    esac
  done

  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found; this helper supports Debian 12 only." >&2
    echo "deps.sh: install by hand: ${wanted[*]}" >&2
    return 1
  fi

  local missing
  mapfile -t missing < <(keygate_missing_packages "${wanted[@]}")
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi

  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "deps.sh: missing packages: ${missing[*]}" >&2
      echo "deps.sh: not root and sudo is not available; install them as root and re-run." >&2
      return 1
    fi
  fi

  echo "deps.sh: installing missing packages: ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1

  mapfile -t missing < <(keygate_missing_packages "${wanted[@]}")
  if [[ ${#missing[@]} -ne 0 ]]; then
    echo "deps.sh: still missing after apt-get install: ${missing[*]}" >&2
    return 1
  fi
}

# Executed (not sourced): install and exit with the result.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  keygate_install_deps "$@"
fi
