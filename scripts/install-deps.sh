#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine: deno 2.9.6 from
# npm, etcd and the network tools from apt. Safe to run again: it skips what is there.
set -euo pipefail

DENO_VERSION=2.9.6
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: needs root (for apt and network namespaces); run as root or install sudo" >&2
    exit 2
  fi
fi

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have etcd || missing+=(etcd-server)
have etcdctl || missing+=(etcd-client)
have ip || missing+=(iproute2)
have ping || missing+=(iputils-ping)
have iperf3 || missing+=(iperf3)
have iptables || missing+=(iptables)
have tcpdump || missing+=(tcpdump)
have npm || missing+=(npm)
have cloud-init || missing+=(cloud-init)   # its schema checker validates our user-data
have openssl || missing+=(openssl)         # the etcd TLS tests make certificates
have lxc-create || missing+=(lxc)          # real LXC containers in the container tests
static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }
static_busybox || missing+=(busybox-static) # LXC's busybox template and the local Docker image
have dockerd || missing+=(docker.io)       # real Docker in the container tests
have wireguard-go || missing+=(wireguard-go) # the WireGuard interop tests' reference peer
have wg || missing+=(wireguard-tools)
# gcc and libc headers: the genetlink stand-in that checks our WireGuard messages against wg's.
have gcc || missing+=(gcc)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
# libsodium: the WireGuard data path's crypto (lib/wireguard/crypto.ts falls back without it).
ldconfig -p 2>/dev/null | grep -q 'libsodium\.so\.23 ' || missing+=(libsodium23)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! (have deno && deno --version 2>/dev/null | head -n1 | grep -q "deno ${DENO_VERSION} "); then
  echo "install-deps: npm install -g deno@${DENO_VERSION}"
  $SUDO npm install -g --silent "deno@${DENO_VERSION}" >/dev/null
fi
deno --version | head -n1
