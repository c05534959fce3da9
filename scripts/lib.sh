# Shared by the scripts in this folder: timed stages and installing missing Debian packages.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# stage NAME CMD...: runs CMD, prints how long it took (the CI budget stays visible).
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "==> stage: $name"
  local rc=0
  "$@" || rc=$?
  echo "==> stage: $name: $((SECONDS - t0)) s (exit $rc)"
  return $rc
}

# need_root WHAT: namespaces and nft need root.
need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$1 needs root (network namespaces, nft); run it with sudo." >&2
    exit 2
  fi
}

# ensure_debs PKG...: installs the Debian packages that are missing, nothing else.
ensure_debs() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The packages the tests and the demo use: nft, ip, sysctl, setpriv, timeout, systemd-analyze.
base_setup() {
  ensure_debs nftables iproute2 procps util-linux coreutils bash systemd tor time
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 2; }
}
