#!/usr/bin/env bash
# Installs everything berth needs to build, test and run its demo on Debian 12.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail

pkgs=(
  busybox-static   # test images are built from Debian's static busybox
  libseccomp-dev   # seccomp filters (cgo)
  nftables         # NAT and port publishing
  iproute2         # ip netns / links in network tests
  e2fsprogs
  xz-utils
  zstd
  pigz
  skopeo           # interop checks of saved and loaded archives
  tar
  util-linux
  procps
  iptables
  git
  make
  gcc
  pkg-config
  ca-certificates
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# staticcheck is a Go tool; install it into GOPATH/bin when absent.
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  GOFLAGS=-buildvcs=false go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 || \
    echo "install-deps: staticcheck not installed; lint will be skipped" >&2
fi
echo "install-deps: ok"
