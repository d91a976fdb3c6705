#!/bin/sh
# Installs the Debian 12 packages mows needs to build, run its demo, tests and benchmarks.
# Only calls apt-get when something is missing, so repeated runs are quick.
set -eu
pkgs="build-essential pkg-config libfuse3-dev fuse3 libisal-dev libinih-dev check \
      libibverbs-dev librdmacm-dev fio sshfs openssh-server openssh-client rclone iproute2 \
      psmisc kmod procps python3 libssl-dev openssl clang"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages:$missing; run 'make deps' as root" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
