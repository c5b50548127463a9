#!/usr/bin/env bash
# Installs the Debian 12 packages keygate needs, but only those that are missing.
#
#   scripts/deps.sh [build] [peers] [deploy] [all]      (no argument: all)
#
#   build:  toolchain and libraries to compile keygate and its tests
#   peers:  the real programs the tests and scripts/run talk to (redis, redis-cli, twemproxy,
#           redis-py for the integration tests; prometheus for promtool and python3-yaml,
#           which check the alert rules in deploy/prometheus/; its service need not run)
#   deploy: what the packaging checks (tests/deploy/) run: kubectl (Debian's
#           kubernetes-client, only when no kubectl is on PATH), Node.js and npm (from apt,
#           only when no npm is on PATH), and dockerfilelint from the npm registry, installed
#           into .tools/ (gitignored) from the lockfile in tests/deploy/tools/. When the
#           kubectl on PATH is not Debian's, Debian's kubernetes-client is also unpacked (not
#           installed) into .tools/debian-kubectl/, so the manifests are rendered with both
#           its old kustomize (v2.0.3) and the newer one.
#
# Checks with dpkg-query (or command -v, or the file) first and touches apt or npm only when
# something is missing, so a machine that already has everything never needs the network.
# Works as root; otherwise uses sudo when it is available. Used by scripts/build, scripts/run,
# scripts/test, the Dockerfile (build only) and the deploy tests' setup step (deploy); also
# fine to source and call keygate_install_deps yourself.

keygate_build_packages=(
  g++ cmake make pkg-config
  libboost-dev libhiredis-dev libyaml-cpp-dev prometheus-cpp-dev libspdlog-dev liburing-dev
  libssl-dev openssl
  catch2 libbenchmark-dev
)
keygate_peer_packages=(
  redis-server redis-tools nutcracker python3 python3-redis python3-yaml prometheus
)

# deploy: apt packages always wanted; kubectl and npm are added by keygate_deploy_packages only
# when missing (a kubectl from another source, e.g. Kubernetes' own apt repository, or a
# Node.js from NodeSource with its own npm, is used as it is: Debian's would conflict).
keygate_deploy_base_packages=(python3 python3-yaml openssl)
keygate_dockerfilelint_version="1.8.0"

keygate_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }

keygate_deploy_packages() {
  printf '%s\n' "${keygate_deploy_base_packages[@]}"
  command -v kubectl >/dev/null 2>&1 || printf '%s\n' kubernetes-client
  command -v npm >/dev/null 2>&1 || printf '%s\n' nodejs npm
}

# dockerfilelint into <repo>/.tools/ with `npm ci` from the committed lockfile, when missing.
keygate_install_dockerfilelint() {
  local root tools lint
  root=$(keygate_root)
  tools="$root/.tools"
  lint="$tools/node_modules/.bin/dockerfilelint"
  if [[ -x "$lint" ]] && cmp -s "$root/tests/deploy/tools/package-lock.json" \
       "$tools/package-lock.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "deps.sh: npm not found; cannot install dockerfilelint" >&2
    return 1
  fi
  echo "deps.sh: installing dockerfilelint ${keygate_dockerfilelint_version} into $tools" >&2
  mkdir -p "$tools" || return 1
  cp "$root/tests/deploy/tools/package.json" "$root/tests/deploy/tools/package-lock.json" \
    "$tools/" || return 1
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2) || return 1
  if [[ ! -x "$lint" ]]; then
    echo "deps.sh: npm ci did not produce $lint" >&2
    return 1
  fi
}

# Debian's kubectl (kustomize v2.0.3) next to a newer kubectl on PATH: apt-get download and
# dpkg-deb -x into .tools/debian-kubectl/, when missing. Nothing to do when the kubectl on PATH
# is Debian's own.
keygate_install_debian_kubectl() {
  local root dir tmp deb status apt_opts=()
  root=$(keygate_root)
  dir="$root/.tools/debian-kubectl"
  [[ -x "$dir/usr/bin/kubectl" ]] && return 0
  status=$(dpkg-query -W -f='${db:Status-Status}' kubernetes-client 2>/dev/null || true)
  if [[ "$status" == "installed" && "$(command -v kubectl)" == /usr/bin/kubectl ]]; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] && apt_opts=(-o APT::Sandbox::User=root)
  tmp=$(mktemp -d) || return 1
  echo "deps.sh: unpacking Debian's kubernetes-client into $dir (not installed)" >&2
  local sudo=()
  [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo=(sudo)
  # No package lists yet (a fresh machine or image): apt-get update once, then retry.
  (cd "$tmp" && apt-get "${apt_opts[@]}" -q download kubernetes-client >&2) \
    || { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
         && (cd "$tmp" && apt-get "${apt_opts[@]}" -q download kubernetes-client >&2); } \
    || true
  deb=$(ls "$tmp"/kubernetes-client_*.deb 2>/dev/null | head -n1)
  if [[ -z "$deb" ]] || ! dpkg-deb -x "$deb" "$dir.partial"; then
    rm -rf "$tmp" "$dir.partial"
    echo "deps.sh: could not download or unpack kubernetes-client" >&2
    return 1
  fi
  rm -rf "$tmp" "$dir"
  mv "$dir.partial" "$dir"
}

keygate_deploy_tools() {
  keygate_install_dockerfilelint && keygate_install_debian_kubectl
}

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
  local wanted=() group deploy=0 deploy_packages=()
  [[ $# -eq 0 ]] && set -- all
  for group in "$@"; do
    case "$group" in
      build) wanted+=("${keygate_build_packages[@]}") ;;
      peers) wanted+=("${keygate_peer_packages[@]}") ;;
      deploy) deploy=1 ;;
      all) wanted+=("${keygate_build_packages[@]}" "${keygate_peer_packages[@]}"); deploy=1 ;;
      *) echo "deps.sh: unknown group '$group' (use build, peers, deploy or all)" >&2; return 2 ;;
    esac
  done
  if (( deploy )); then
    mapfile -t deploy_packages < <(keygate_deploy_packages)
    wanted+=("${deploy_packages[@]}")
  fi

  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found; this helper supports Debian 12 only." >&2
    echo "deps.sh: install by hand: ${wanted[*]}" >&2
    return 1
  fi

  local missing
  mapfile -t missing < <(keygate_missing_packages "${wanted[@]}")
  if [[ ${#missing[@]} -eq 0 ]]; then
    if (( deploy )); then keygate_deploy_tools || return 1; fi
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
  if (( deploy )); then keygate_deploy_tools || return 1; fi
}

# Executed (not sourced): install and exit with the result.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  keygate_install_deps "$@"
fi
