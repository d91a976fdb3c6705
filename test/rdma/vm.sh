#!/bin/bash
# test/rdma/vm.sh: runs test/rdma/guest-test.sh inside a qemu VM (TCG, no KVM needed) that
# boots Debian 12's own kernel with soft-RoCE (rdma_rxe), so that net/rdma.c is tested with
# real verbs and rdma_cm on a host whose kernel has no RDMA at all.
#
#   test/rdma/vm.sh [run]     prepare (cached) and boot; exit status = the guest's result
#   test/rdma/vm.sh prepare   only download and build the cached kernel + base initramfs
#
# The mows binaries must be built first (make check-rdma does both): mows-fuse, mowsctl and
# test/bin/rdma_pair. They go into the VM with the libraries ldd finds, in a second cpio
# archive appended to the cached base one, so a rebuild costs seconds.
#
# Environment:
#   MOWS_RDMA_VM_CACHE    cache directory (default /var/cache/mows-rdma-vm, or
#                         /tmp/mows-rdma-vm when that is not writable); about 450 MB
#   MOWS_RDMA_VM_TIMEOUT  seconds for the whole VM run (default 600)
#   MOWS_RDMA_VM_ARGS     extra words for the guest test (kernel command line mows.args=)
#   MOWS_RDMA_PAIR        another rdma_pair binary (e.g. one built with SANITIZE=...)
#
# Exit status: 0 all guest tests passed; 1 a test failed, or the VM died without a result;
# 2 the harness itself could not prepare the VM (download, build); 77 (with a "SKIP:"
# line) only when qemu cannot run on this host at all.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TIMEOUT=${MOWS_RDMA_VM_TIMEOUT:-600}
LIBDIR=usr/lib/x86_64-linux-gnu
# Only the kernel modules the tests need, with their dependencies added below. crc32_generic
# is not a recorded dependency of rdma_rxe, but rxe asks the crypto API for "crc32" by name
# and "rdma link add" fails with ENOENT without it.
MODULES=(crc32_generic rdma_rxe rdma_ucm ib_uverbs dummy fuse)
DEBS=(busybox-static libibverbs1 librdmacm1 ibverbs-providers libnl-3-200 libnl-route-3-200)

say() { printf 'vm.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

pick_cache() {
	local d=${MOWS_RDMA_VM_CACHE:-/var/cache/mows-rdma-vm}
	if ! mkdir -p "$d" 2>/dev/null || ! [ -w "$d" ]; then
		[ -n "${MOWS_RDMA_VM_CACHE:-}" ] && die "cache $d is not writable; set MOWS_RDMA_VM_CACHE"
		d=/tmp/mows-rdma-vm
		mkdir -p "$d"
	fi
	CACHE=$d
}

apt_lists() {
	[ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] ||
		apt-get update -q >/dev/null
}

apt_install() {
	[ "$(id -u)" -eq 0 ] || return 1
	apt_lists || return 1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
		>"$CACHE/apt-install.log" 2>&1
}

# qemu is the one thing whose absence is a skip: without it nothing can be tested here.
need_qemu() {
	if ! command -v qemu-system-x86_64 >/dev/null; then
		say "installing qemu-system-x86"
		apt_install qemu-system-x86 || true
	fi
	if ! command -v qemu-system-x86_64 >/dev/null || ! qemu-system-x86_64 -version >/dev/null 2>&1; then
		echo "SKIP: test/rdma: qemu-system-x86_64 cannot run here (apt-get install qemu-system-x86)"
		exit 77
	fi
	command -v cpio >/dev/null || apt_install cpio || die "cpio is missing and could not be installed"
}

# ---- the kernel and the RDMA user space, downloaded (never installed on the host) ----

kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}

fetch() {
	apt_lists || die "apt-get update failed"
	KPKG=$(kernel_package)
	[ -n "$KPKG" ] || die "cannot tell which kernel linux-image-amd64 means (apt-get update?)"
	KVER=${KPKG#linux-image-}
	PKGDIR=$CACHE/pkgs-$KVER
	[ -f "$PKGDIR/.done" ] && return
	rm -rf "$PKGDIR" "$CACHE"/pkgs-*
	mkdir -p "$PKGDIR/debs" "$PKGDIR/root"
	say "downloading $KPKG ${DEBS[*]}"
	# apt-get download writes into the current directory.
	(cd "$PKGDIR/debs" && apt-get download -q "$KPKG" "${DEBS[@]}" >"$PKGDIR/download.log" 2>&1) ||
		die "apt-get download failed: $(tail -n 3 "$PKGDIR/download.log")"
	local deb
	for deb in "$PKGDIR"/debs/*.deb; do
		dpkg -x "$deb" "$PKGDIR/root" || die "dpkg -x $deb failed"
	done
	# Debian builds modules.dep in the package's postinst; make it for the unpacked tree.
	"$PKGDIR/root/bin/busybox" depmod -b "$PKGDIR/root" "$KVER" ||
		die "depmod for $KVER failed"
	rm -rf "$PKGDIR/debs"
	touch "$PKGDIR/.done"
}

# ---- initramfs pieces ----

# Prints the modules.dep paths of @MODULES and everything they need, dependencies first.
module_closure() {
	local dep=$1 want
	declare -A path=() deps=() seen=()
	local line key rest name
	while IFS= read -r line; do
		key=${line%%:*}
		rest=${line#*:}
		name=${key##*/}
		name=${name%%.ko*}
		name=${name//-/_}
		path[$name]=$key
		deps[$key]=$rest
	done <"$dep"
	visit() {
		local p=$1 d
		[ -n "${seen[$p]:-}" ] && return
		seen[$p]=1
		for d in ${deps[$p]}; do visit "$d"; done
		echo "$p"
	}
	for want in "${MODULES[@]}"; do
		[ -n "${path[$want]:-}" ] || { say "module $want is not in $dep"; return 1; }
		visit "${path[$want]}"
	done
}

# add_elf ROOT SRC DEST: installs an executable or library and every library ldd lists for
# it, preferring the downloaded packages over the host (both are Debian 12).
add_elf() {
	local root=$1 src=$2 dest=$3 lib out
	install -D -m755 "$src" "$root/$dest"
	out=$(LD_LIBRARY_PATH="$PKGDIR/root/$LIBDIR" ldd "$src" 2>&1) || true
	if grep -q 'not found' <<<"$out"; then
		say "libraries of $src not found:"; grep 'not found' <<<"$out" >&2; return 1
	fi
	for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/lib64\// { print $1 }' <<<"$out"); do
		case $lib in
		*/ld-linux-x86-64.so.2) dest=usr/lib64/ld-linux-x86-64.so.2 ;;
		*) dest=$LIBDIR/${lib##*/} ;;
		esac
		[ -e "$root/$dest" ] || [ -e "$BASE_ROOT/$dest" ] || install -D -m755 "$lib" "$root/$dest"
	done
}

build_base() {
	local stamp
	# What the base is made of: init.sh and the functions that build it (not all of vm.sh,
	# whose other edits would rebuild it for nothing, in every worktree sharing the cache).
	stamp="$KVER $({ declare -f build_base add_elf module_closure; echo "${MODULES[*]}"
		cat "$HERE/init.sh"; } | md5sum | cut -c1-12)"
	BASE=$CACHE/base-$KVER.cpio.gz
	BASE_ROOT=$CACHE/base-root
	if [ -f "$BASE" ] && [ "$(cat "$CACHE/base.stamp" 2>/dev/null)" = "$stamp" ]; then
		return
	fi
	say "building the base initramfs for $KVER"
	local r=$BASE_ROOT x=$PKGDIR/root m b
	rm -rf "$r"
	mkdir -p "$r"/{usr/bin,usr/lib64,$LIBDIR/libibverbs,etc/libibverbs.d,proc,sys,dev,tmp,run,root,mnt}
	ln -s usr/bin "$r/bin"
	ln -s usr/bin "$r/sbin"
	ln -s bin "$r/usr/sbin"
	ln -s usr/lib "$r/lib"
	ln -s usr/lib64 "$r/lib64"
	install -m755 "$x/bin/busybox" "$r/usr/bin/busybox"
	for b in $("$x/bin/busybox" --list); do
		# "busybox" is in its own list: a link named busybox would replace the binary.
		[ "$b" = busybox ] || ln -s busybox "$r/usr/bin/$b"
	done
	# Real tools where busybox has none or a weaker one. bash is /bin/sh: Debian's busybox
	# ash prefers its own applets (its ip) even over a real binary earlier in PATH.
	rm -f "$r/usr/bin/sh" "$r/usr/bin/ip"
	add_elf "$r" "$(command -v bash)" usr/bin/bash
	ln -s bash "$r/usr/bin/sh"
	add_elf "$r" "$(command -v ip)" usr/bin/ip
	add_elf "$r" "$(command -v rdma)" usr/bin/rdma
	command -v fusermount3 >/dev/null || apt_install fuse3 || die "fusermount3 missing (fuse3)"
	rm -f "$r/usr/bin/fusermount3"
	add_elf "$r" "$(command -v fusermount3)" usr/bin/fusermount3
	# glibc dlopen()s libgcc_s for thread unwinding; ldd cannot see that.
	install -m644 "$(gcc -print-file-name=libgcc_s.so.1)" "$r/$LIBDIR/libgcc_s.so.1"
	cp "$x/etc/libibverbs.d/rxe.driver" "$r/etc/libibverbs.d/"
	add_elf "$r" "$x/$LIBDIR/libibverbs/librxe-rdmav34.so" "$LIBDIR/libibverbs/librxe-rdmav34.so"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\n' >"$r/etc/group"
	printf '127.0.0.1 localhost\n' >"$r/etc/hosts"
	local md=$x/lib/modules/$KVER
	module_closure "$md/modules.dep" >"$CACHE/modules.order" || die "module closure failed"
	: >"$r/etc/modules.load"
	while read -r m; do
		install -D -m644 "$md/$m" "$r/lib/modules/$KVER/$m"
		case $m in
		*.xz) xz -d "$r/lib/modules/$KVER/$m"; m=${m%.xz} ;;
		*.zst) zstd -q -d --rm "$r/lib/modules/$KVER/$m"; m=${m%.zst} ;;
		esac
		echo "/lib/modules/$KVER/$m" >>"$r/etc/modules.load"
	done <"$CACHE/modules.order"
	install -m755 "$HERE/init.sh" "$r/init"
	(cd "$r" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$BASE.tmp"
	mv "$BASE.tmp" "$BASE"
	cp "$x/boot/vmlinuz-$KVER" "$CACHE/vmlinuz-$KVER"
	echo "$stamp" >"$CACHE/base.stamp"
	say "base initramfs: $(du -h "$BASE" | cut -f1), $(wc -l <"$CACHE/modules.order") modules"
}

# The binaries under test, their libraries and the guest script: a second cpio archive
# (the kernel unpacks concatenated archives in order).
build_tests() {
	local r=$CACHE/tests-root b
	TESTS=$CACHE/tests.cpio.gz
	rm -rf "$r"
	mkdir -p "$r/usr/bin" "$r/etc"
	for b in "$REPO/mows-fuse" "$REPO/mowsctl" "${MOWS_RDMA_PAIR:-$REPO/test/bin/rdma_pair}"; do
		[ -x "$b" ] || die "$b is missing: build it first (make check-rdma)"
	done
	add_elf "$r" "$REPO/mows-fuse" usr/bin/mows-fuse
	add_elf "$r" "$REPO/mowsctl" usr/bin/mowsctl
	[ -x "$REPO/mows-peerbench" ] && add_elf "$r" "$REPO/mows-peerbench" usr/bin/mows-peerbench
	add_elf "$r" "${MOWS_RDMA_PAIR:-$REPO/test/bin/rdma_pair}" usr/bin/rdma_pair
	# Whether the daemon has the RDMA transport (peer.c wired to net/rdma.c) decides if the
	# two-daemon tests can demand RDMA traffic.
	# (grep -q would close the pipe early: with pipefail nm's SIGPIPE would read as "no".)
	# No symbol found is a failure in the guest (rdma_counters), never a skip: this mows-fuse
	# is meant to have the transport. nm itself missing is a broken harness.
	local syms
	command -v nm >/dev/null 2>&1 || die "nm is not installed (apt-get install binutils)"
	syms=$(nm "$REPO/mows-fuse" 2>/dev/null || true)
	if grep -q ' T rdma_ctx_new$' <<<"$syms"; then
		echo yes >"$r/etc/mows-daemon-rdma"
	else
		echo no >"$r/etc/mows-daemon-rdma"
	fi
	install -m755 "$HERE/guest-test.sh" "$r/usr/bin/guest-test.sh"
	(cd "$r" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$TESTS"
}

run_vm() {
	local out=$CACHE/out rc marker
	mkdir -p "$out"
	cat "$BASE" "$TESTS" >"$out/initrd.gz"
	# Every result of an earlier run goes first: a stale marker must never pass.
	rm -f "$out/console.log" "$out/results.log" "$out/results.txt"
	local guest_tmo=$((TIMEOUT - 30))
	say "booting (timeout ${TIMEOUT}s; console: $out/console.log)"
	local t0=$SECONDS
	set +e
	# In the background and waited for, so that a TERM or INT to this script (make check
	# stopping the VM it booted beside the other suites) reaches qemu through the trap.
	timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
		-M pc -accel tcg -cpu max -smp 2 -m 1G \
		-nodefaults -no-user-config -display none -no-reboot -nic none \
		-kernel "$CACHE/vmlinuz-$KVER" -initrd "$out/initrd.gz" \
		-append "console=ttyS0 rdinit=/init panic=-1 loglevel=4 mitigations=off mows.timeout=$guest_tmo mows.args=${MOWS_RDMA_VM_ARGS:-}" \
		-serial "file:$out/console.log" -serial "file:$out/results.log" </dev/null &
	QEMU_PID=$!
	wait "$QEMU_PID"
	rc=$?
	QEMU_PID=
	set -e
	: >"$out/results.txt"
	[ -f "$out/results.log" ] && tr -d '\r' <"$out/results.log" >"$out/results.txt"
	grep -v '^MOWS_VM_RC=' "$out/results.txt" || true
	say "qemu exited with $rc after $((SECONDS - t0)) s"
	marker=$(sed -n 's/^MOWS_VM_RC=\([0-9][0-9]*\)$/\1/p' "$out/results.txt" | tail -n1)
	if [ -z "$marker" ]; then
		if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && [ ! -s "$out/console.log" ]; then
			echo "SKIP: test/rdma: qemu-system-x86_64 failed to start a VM (exit $rc)"
			exit 77
		fi
		say "FAIL: the VM ended without a result (crash or timeout); end of its console:"
		tr -d '\r' <"$out/console.log" | tail -n 30 >&2
		exit 1
	fi
	[ "$marker" -eq 0 ] && exit 0
	exit 1
}

QEMU_PID=
trap '[ -z "$QEMU_PID" ] || kill -TERM "$QEMU_PID" 2>/dev/null; say "stopped"; exit 1' INT TERM HUP
pick_cache
need_qemu
# One run at a time per cache: two runs (two worktrees, or make check beside make
# check-rdma) would overwrite each other's test archive and results.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
	say "another run holds $CACHE/.lock; waiting (at most ${TIMEOUT}s; MOWS_RDMA_VM_CACHE=DIR runs apart)"
	flock -w "$TIMEOUT" 9 || die "$CACHE is still busy after ${TIMEOUT}s"
fi
case ${1:-run} in
prepare)
	fetch
	build_base
	;;
run)
	fetch
	build_base
	build_tests
	run_vm
	;;
*)
	sed -n '2,22p' "$0" >&2
	exit 2
	;;
esac
