#!/bin/sh
# Installs the Debian 12 packages mows needs to build, run its demo, tests and benchmarks.
# Only calls apt-get when something is missing, so repeated runs are quick.
set -eu
pkgs="build-essential pkg-config libfuse3-dev fuse3 libisal-dev libinih-dev check \
      libibverbs-dev librdmacm-dev fio sshfs openssh-server openssh-client rclone iproute2 \
      psmisc kmod procps python3 libssl-dev openssl clang s3fs nodejs"
# packaging and docs: make deb, t_deb (lintian), t_manpages (man, groff), t_k8s_manifests
pkgs="$pkgs dpkg-dev lintian man-db groff-base python3-yaml"
pkgs="$pkgs libmicrohttpd-dev libsystemd-dev prometheus curl tmux"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm ships inside some nodejs builds (NodeSource's); Debian's own nodejs needs the npm package.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages:$missing; run 'make deps' as root" >&2
		exit 1
	fi
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing
fi

# The object-store tests' local S3 server (Debian has none): s3rver from npm, pinned.
npm_dir=${MOWS_NPM_DIR:-/var/cache/mows-npm}
if [ ! -f "$npm_dir/node_modules/s3rver/package.json" ]; then
	echo "deps: installing the npm package s3rver@3.7.1 into $npm_dir"
	mkdir -p "$npm_dir"
	(cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error s3rver@3.7.1 >/dev/null)
fi
