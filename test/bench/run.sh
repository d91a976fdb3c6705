#!/bin/bash
# mows benchmark: measures mows side by side with what it replaces, in one run, and prints one
# markdown table (also saved to test/bench/last-results.md).
#
#   (a) first read from a NAS-like backing (sshfs over a rate-limited veth between network
#       namespaces), mows with a cold daemon vs reading sshfs directly; and the same from a
#       local backing, where FUSE itself is the limit.
#   (b) daemon cache warm, kernel page cache dropped: read() 1 MiB and mmap+memcpy through
#       mows vs the memfs FUSE baseline vs tmpfs.
#   (c) kernel page cache warm: mows vs tmpfs.
#   (d) four processes mmapping the model at once: page cache growth and daemon memory.
#   (e) rclone mount --vfs-cache-mode full, cache warm, vs mows.
#   (f) an object-store backing: Debian's s3fs over a local S3 server (s3rver, test/s3):
#       a warm read through mows vs a direct s3fs read, and the store requests (counted at
#       the server) that a warm pass over the model through mows makes.
#   (g) node memory after a cold read with open_wait = complete (passthrough), and how soon
#       the mount is ready.
#
# Both sides of a comparison are measured in the same round, in the opposite order in every
# other round, and the best round counts (idle memory on this kind of machine faults back
# slowly, and other work on a small machine comes and goes).
# Run as root. Every mount, daemon, namespace and sysctl it creates is undone on exit.
#
# Environment (defaults in brackets):
#   MOWS_BENCH_SIZE [2G]          model size for (a) local and (b)-(e)
#   MOWS_BENCH_NET_SIZE [512M]    model size for (a) over the network
#   MOWS_BENCH_NET_RATE [400mbit] tc tbf rate of the storage link
#   MOWS_BENCH_SHARDS [4]         safetensors shards per model
#   MOWS_BENCH_ROUNDS [5]         interleaved rounds of (b), (c), (e); the best counts
#   MOWS_BENCH_NET_ROUNDS [3]     rounds of (a), which are slow
#   MOWS_BENCH_READAHEAD_KB [1024] mows --readahead-kb, and read_ahead_kb of the other FUSE mounts
#   MOWS_BENCH_MAX_MEMORY [size + max(size/8, 256M)] mows --max-memory
#   MOWS_BENCH_HUGEPAGES [auto]   mows --hugepages
#   MOWS_BENCH_SECTIONS [a b c d e f g] which measurements to run
#   MOWS_BENCH_S3_SIZE [256M]     model size for (f) (uploaded through s3fs first)
#   MOWS_BENCH_DIR [/var/tmp]     where the work directory (model, caches, logs) is made
#   MOWS_BENCH_KEEP [0]           1 keeps the work directory (logs) after the run
#   MOWS_BENCH_TIMEOUT [300]      seconds one reader may take before it counts as failed
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/test/bench
SIZE=${MOWS_BENCH_SIZE:-2G}
NET_SIZE=${MOWS_BENCH_NET_SIZE:-512M}
NET_RATE=${MOWS_BENCH_NET_RATE:-400mbit}
SHARDS=${MOWS_BENCH_SHARDS:-4}
ROUNDS=${MOWS_BENCH_ROUNDS:-5}
NET_ROUNDS=${MOWS_BENCH_NET_ROUNDS:-3}
READAHEAD_KB=${MOWS_BENCH_READAHEAD_KB:-1024}
HUGEPAGES=${MOWS_BENCH_HUGEPAGES:-auto}
SECTIONS=${MOWS_BENCH_SECTIONS:-a b c d e f g}
S3_SIZE=${MOWS_BENCH_S3_SIZE:-256M}
KEEP=${MOWS_BENCH_KEEP:-0}
TIMEOUT=${MOWS_BENCH_TIMEOUT:-300}
RESULTS=$BENCH/last-results.md

# Simulated hosts: addresses from 198.18.0.0/15 (RFC 2544 benchmarking) only.
STOR_ADDR=198.18.0.1
NODE_ADDR=198.18.0.2
SSH_PORT=2222
STOR_NS=mowsb-stor-$$
NODE_NS=mowsb-node-$$
VETH_STOR=mwb$$s
VETH_NODE=mwb$$n

# --- state that cleanup undoes ---------------------------------------------------------------
WORK=""
MOUNTS=()          # mountpoints in mount order, "" once unmounted
declare -A PID_OF  # mountpoint -> pid of its daemon
DAEMONS=()         # other daemons (sshd), "" once stopped
NAMESPACES=()
HUGEPAGES_SAVED="" # vm.nr_hugepages before the run
HUGEPAGES_SET=""   # and the value this run set
RUN_SSHD_MADE=0
FG_PID=""          # the long command running now (see fg_run)
FAILED=0

log() { echo "[bench +${SECONDS}s] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

size_bytes() { # "2G" -> bytes (K/M/G/T are powers of 1024)
	local v=${1%[bB]} mult=1
	case $v in
	*[kK]) mult=1024 ;; *[mM]) mult=$((1024 ** 2)) ;;
	*[gG]) mult=$((1024 ** 3)) ;; *[tT]) mult=$((1024 ** 4)) ;;
	esac
	v=${v%[kKmMgGtT]}
	[[ $v =~ ^[0-9]+$ ]] || die "size '$1': expected a size such as 512M or 2G"
	echo $((v * mult))
}

gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }

# --- cleanup -------------------------------------------------------------------------------
stop_pid() { # pid [seconds]: waits for a pid to end, then TERM, then KILL
	local pid=$1 t=${2:-10} i
	for ((i = 0; i < t * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after ${t}s, sending TERM"
		kill "$pid" 2>/dev/null || true
		sleep 1
		kill -9 "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

unmount_one() { # mountpoint: unmounts it, stops its daemon; returns nonzero if it stays
	local mnt=$1 pid=${PID_OF[$1]:-} rc=0
	if is_mounted "$mnt"; then
		if ! fusermount3 -u "$mnt" 2>/dev/null && ! umount "$mnt" 2>/dev/null; then
			log "unmount $mnt failed (busy?); killing its daemon and detaching it"
			[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
			fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || rc=1
		fi
	fi
	[ -n "$pid" ] && stop_pid "$pid"
	unset "PID_OF[$mnt]"
	for i in "${!MOUNTS[@]}"; do [ "${MOUNTS[$i]}" = "$mnt" ] && MOUNTS[i]=""; done
	return $rc
}

cleanup() {
	local rc=$? i
	set +e
	trap - EXIT INT TERM
	if [ -n "$FG_PID" ]; then
		kill "$FG_PID" 2>/dev/null
		stop_pid "$FG_PID" 5
	fi
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		[ -n "${MOUNTS[$i]}" ] && unmount_one "${MOUNTS[$i]}"
	done
	for pid in "${DAEMONS[@]}"; do
		[ -n "$pid" ] && kill "$pid" 2>/dev/null && stop_pid "$pid" 5
	done
	for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
	ip link del "$VETH_STOR" 2>/dev/null # only if it never moved into its namespace
	# Another sshd on the machine may need /run/sshd from now on: only remove it when none runs.
	[ "$RUN_SSHD_MADE" = 1 ] && ! pgrep -x sshd >/dev/null && rmdir /run/sshd 2>/dev/null
	# Put the pool back unless someone else changed it meanwhile (other work on the machine).
	if [ -n "$HUGEPAGES_SAVED" ] && [ "$(cat /proc/sys/vm/nr_hugepages)" = "$HUGEPAGES_SET" ]; then
		echo "$HUGEPAGES_SAVED" >/proc/sys/vm/nr_hugepages
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if grep -q " $WORK/" /proc/mounts; then
			log "something is still mounted under $WORK; leaving it in place"
		elif [ "$KEEP" = 1 ]; then
			log "work directory kept: $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- small helpers -------------------------------------------------------------------------
# fg_run command...: runs a long command so INT/TERM act at once: bash runs traps only between
# foreground commands, but a trapped signal interrupts `wait`.
fg_run() {
	local rc=0
	"$@" &
	FG_PID=$!
	wait "$FG_PID" || rc=$?
	FG_PID=""
	return $rc
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	MY_DROPS=$((MY_DROPS + 1))
}
MY_DROPS=0

# How often processes other than this one dropped the page cache (/proc/vmstat counts every
# drop_caches), so a page-cache-warm measurement can tell it was disturbed.
drops_by_others() { echo $(($(awk '$1 == "drop_pagecache" { print $2 }' /proc/vmstat) - MY_DROPS)); }

meminfo_kb() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }

bdi_of() { echo "/sys/class/bdi/$(mountpoint -d "$1")"; }

set_readahead() { # mountpoint kb
	echo "$2" >"$(bdi_of "$1")/read_ahead_kb"
}

get_readahead() { cat "$(bdi_of "$1")/read_ahead_kb" 2>/dev/null || echo "?"; }

wait_mounted() { # mountpoint pid logfile
	local i
	for ((i = 0; i < 300; i++)); do
		is_mounted "$1" && return 0
		if ! kill -0 "$2" 2>/dev/null; then
			log "daemon for $1 exited before mounting; its log:"
			tail -n 20 "$3" >&2
			return 1
		fi
		sleep 0.1
	done
	log "$1 did not appear in /proc/mounts within 30s"
	return 1
}

# start_daemon mountpoint logfile command...: runs a FUSE daemon in the foreground of a
# background job and waits for its mount. The mount is registered for cleanup either way.
start_daemon() {
	local mnt=$1 logf=$2
	shift 2
	mkdir -p "$mnt"
	"$@" >"$logf" 2>&1 &
	PID_OF[$mnt]=$!
	MOUNTS+=("$mnt")
	wait_mounted "$mnt" "${PID_OF[$mnt]}" "$logf"
}

# json_get json key: the number (or string) under a dotted key such as memory.used.
json_get() {
	python3 -c 'import json, sys
d = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    d = d[k]
print(d)' "$1" "$2" 2>/dev/null || echo "?"
}

# resident dir: bytes of dir's files in the page cache (mincore through fincore).
resident() {
	local f n=0
	for f in "$1"/*; do
		n=$((n + $(fincore -b -n -o RES "$f" 2>/dev/null || echo 0)))
	done
	echo "$n"
}

# --- results -------------------------------------------------------------------------------
declare -A BEST # label -> best GB/s over the rounds
declare -A RAW  # label -> every round's GB/s
LABELS=()       # labels in the order first measured

# run_reader mode args...: one timed read; sets RATE (GB/s). Nonzero when the reader failed.
run_reader() {
	local mode=$1 out
	shift
	fg_run timeout -k 5 "$TIMEOUT" "$WORK/bin/reader" -m "$mode" "$@" >"$WORK/reader.out" ||
		return 1
	out=$(<"$WORK/reader.out")
	RATE=${out##*gbps=}
}

# record label rate: keeps every round's rate and the best.
record() {
	[ -n "${RAW[$1]:-}" ] || LABELS+=("$1")
	RAW[$1]="${RAW[$1]:-}${RAW[$1]:+ }$2"
	log "$(printf '%-28s %s GB/s' "$1" "$2")"
	if [[ ${BEST[$1]:-error} == error ]] ||
		awk -v a="$2" -v b="${BEST[$1]}" 'BEGIN { exit !(a > b) }'; then
		BEST[$1]=$2
	fi
}

# measure label mode args...: one timed read, recorded under label.
# With GUARD_DROPS set (the page cache should be warm since that drops_by_others count), a
# read is thrown away when another process dropped the page cache since its files were
# warmed; they are read once more and the measurement is repeated (at most twice).
GUARD_DROPS=""
DISTURBED=0
declare -A WARM_MARK # directory -> drops_by_others when its files were last warmed again
measure() {
	local label=$1 mode=$2 dir try mark
	shift 2
	[[ $label == *.mows.* && $MOWS_OK != 1 ]] && return 0
	dir=$(dirname "${*: -1}")
	for ((try = 1; ; try++)); do
		mark=${WARM_MARK[$dir]:-$GUARD_DROPS}
		if ! run_reader "$mode" "$@"; then
			log "$label: reader failed"
			BEST[$label]=${BEST[$label]:-error}
			FAILED=1
			return 0
		fi
		if [ -z "$GUARD_DROPS" ] || [ "$(drops_by_others)" = "$mark" ] || [ "$try" = 3 ]; then
			break
		fi
		DISTURBED=$((DISTURBED + 1))
		log "$label: another process dropped the page cache; warming again and repeating"
		WARM_MARK[$dir]=$(drops_by_others)
		fg_run timeout -k 5 "$TIMEOUT" "$WORK/bin/reader" -m read "$@" >/dev/null || true
	done
	record "$label" "$RATE"
}

# warm_up files...: one untimed read, so neither side of a comparison starts from memory that
# sat idle (on this kind of machine idle memory is paged out and faults back slowly).
warm_up() {
	drop_caches
	fg_run timeout -k 5 "$TIMEOUT" "$WORK/bin/reader" -m read "$@" >/dev/null || true
}

# cpu_idle_note section: how idle the CPUs were in the second before a section, since other
# work on a small machine moves FUSE numbers (a reader and a daemon need a CPU each).
cpu_idle_note() {
	local a b
	read -ra a </proc/stat
	sleep 1
	read -ra b </proc/stat
	IDLE_NOTES+="$1 $(awk -v i0="${a[4]}" -v w0="${a[5]}" -v i1="${b[4]}" -v w1="${b[5]}" \
		-v t0="$((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8]))" \
		-v t1="$((b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + b[7] + b[8]))" \
		'BEGIN { printf "%.0f%%", 100 * (i1 + w1 - i0 - w0) / (t1 - t0) }'), "
}

# in_order round names...: the names as given in odd rounds, reversed in even ones, so no side
# of a comparison always goes first.
in_order() {
	local r=$1 i
	shift
	if ((r % 2)); then
		echo "$@"
	else
		for ((i = $#; i >= 1; i--)); do echo "${!i}"; done
	fi
}

ROWS=()
NOTES=()
IDLE_NOTES=""

# row scenario mows_label comparison_name comparison_label goal_ratio: goal "" = info
row() {
	local scen=$1 a=${BEST[$2]:-n/a} cname=$3 b=${BEST[$4]:-n/a} goal=$5 ratio="-" met="-"
	local goal_text=info
	[ -n "$goal" ] && goal_text=">= ${goal}x"
	if [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ ]] && awk -v b="$b" 'BEGIN { exit !(b > 0) }'; then
		ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }')
		if [ -n "$goal" ]; then
			met=$(awk -v a="$a" -v b="$b" -v g="$goal" 'BEGIN { print (a / b >= g) ? "yes" : "**no**" }')
		fi
	elif [ -n "$goal" ]; then
		met="**no** (not measured)"
	fi
	[[ $a =~ ^[0-9.]+$ ]] && a="$a GB/s"
	[[ $b =~ ^[0-9.]+$ ]] && b="$b GB/s"
	ROWS+=("| $scen | $a | $cname $b | $ratio | $goal_text | $met |")
}

# --- setup ---------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root: the benchmark mounts, makes namespaces and drops caches"
MOWS_OK=1
for b in mows-fuse mowsctl; do
	if [ ! -x "$ROOT/$b" ]; then
		log "warning: $ROOT/$b is missing ('make all' builds it); measuring the other side only"
		MOWS_OK=0
	fi
done
for t in cc pkg-config fusermount3 ip tc nsenter sshfs ssh-keygen rclone python3 timeout fincore; do
	command -v "$t" >/dev/null || die "'$t' not found: run 'make deps'"
done
[ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd not found: run 'make deps'"

SIZE_B=$(size_bytes "$SIZE")
NET_SIZE_B=$(size_bytes "$NET_SIZE")
if [ -n "${MOWS_BENCH_MAX_MEMORY:-}" ]; then
	MAXMEM_B=$(size_bytes "$MOWS_BENCH_MAX_MEMORY")
else
	extra=$((SIZE_B / 8 > 256 * 1048576 ? SIZE_B / 8 : 256 * 1048576))
	MAXMEM_B=$(((SIZE_B + extra + 2097151) / 2097152 * 2097152))
fi
MAXMEM="$((MAXMEM_B / 1048576))M"

mkdir -p "${MOWS_BENCH_DIR:-/var/tmp}"
WORK=$(mktemp -d "${MOWS_BENCH_DIR:-/var/tmp}/mows-bench.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/bin" "$WORK/mnt" "$WORK/logs"
log "work directory $WORK"

CFLAGS_BENCH="-std=gnu11 -O2 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wformat=2 -Wvla"
cc $CFLAGS_BENCH -o "$WORK/bin/reader" "$BENCH/reader.c"
cc $CFLAGS_BENCH -o "$WORK/bin/genmodel" "$BENCH/genmodel.c"
# shellcheck disable=SC2046 # pkg-config output is a word list
cc $CFLAGS_BENCH -o "$BENCH/memfs" "$BENCH/memfs.c" $(pkg-config --cflags --libs fuse3)

MODEL=$WORK/model
log "generating a $(gib "$SIZE_B") model in $MODEL"
"$WORK/bin/genmodel" "$MODEL" "$SIZE_B" "$SHARDS" 1
MODEL_B=0
for f in "$MODEL"/*; do MODEL_B=$((MODEL_B + $(stat -c %s "$f"))); done
model_files() { local d=$1; echo "$d"/*; } # every file, shards and json alike

# ensure_hugepages: grows vm.nr_hugepages so one mows cache fits beside what other processes
# hold, just before each mows start: other work on the machine may resize the pool meanwhile.
ensure_hugepages() {
	local cur avail need
	[ "$HUGEPAGES" != off ] || return 0
	cur=$(cat /proc/sys/vm/nr_hugepages)
	avail=$(($(meminfo_kb HugePages_Free) - $(meminfo_kb HugePages_Rsvd)))
	need=$((MAXMEM_B / 2097152 + 8))
	[ "$avail" -lt "$need" ] || return 0
	if [ -z "$HUGEPAGES_SAVED" ]; then
		HUGEPAGES_SAVED=$cur
	elif [ "$cur" != "$HUGEPAGES_SET" ]; then
		NOTES+=("vm.nr_hugepages changed from $HUGEPAGES_SET to $cur during the run (other work on the machine); raised again.")
	fi
	echo $((cur + need - avail)) >/proc/sys/vm/nr_hugepages
	HUGEPAGES_SET=$(cat /proc/sys/vm/nr_hugepages)
	[ "$HUGEPAGES_SET" -ge $((cur + need - avail)) ] ||
		NOTES+=("vm.nr_hugepages: asked for $((cur + need - avail)), the kernel gave $HUGEPAGES_SET.")
}

# start_mows name backing [mows-fuse options...]: mounts mows at $WORK/mnt/name; sets
# MOWS_SOCK and MOWS_PID.
start_mows() {
	local mnt=$WORK/mnt/$1 back=$2 t0 ms name=$1
	shift 2
	[ "$MOWS_OK" = 1 ] || return 1
	ensure_hugepages
	MOWS_SOCK=$WORK/$name.sock
	t0=$(date +%s%N)
	start_daemon "$mnt" "$WORK/logs/$name.log" "$ROOT/mows-fuse" -f --backing "$back" \
		--control-socket "$MOWS_SOCK" --max-memory="$MAXMEM" --hugepages="$HUGEPAGES" \
		--readahead-kb="$READAHEAD_KB" "$@" "$mnt" || return 1
	ms=$((($(date +%s%N) - t0) / 1000000))
	log "mows ($name) mounted ${ms} ms after start"
	[ "$ms" -le "$MOWS_START_MAX_MS" ] || MOWS_START_MAX_MS=$ms
	MOWS_PID=${PID_OF[$mnt]}
}
MOWS_START_MAX_MS=0

mows_status() { "$ROOT/mowsctl" -s "$1" status --json 2>/dev/null || echo "{}"; }

# verify_copy dir_a dir_b label: compares every file, untimed.
verify_copy() {
	local f
	for f in "$2"/*; do
		if ! cmp -s "$1/${f##*/}" "$f"; then
			NOTES+=("**$3: ${f##*/} differs from the backing file.**")
			FAILED=1
			log "$3: ${f##*/} differs from the backing"
			return 0
		fi
	done
	log "$3: every file matches the backing"
}

want() { [[ " $SECTIONS " == *" $1 "* ]]; }

# --- (a) first read over a rate-limited network, and from local disk ---------------------------
net_setup() {
	local ssh=$WORK/ssh
	mkdir -m 700 "$ssh"
	ssh-keygen -q -t ed25519 -N '' -C mows-bench-host -f "$ssh/host_key"
	ssh-keygen -q -t ed25519 -N '' -C mows-bench-client -f "$ssh/client_key"
	cp "$ssh/client_key.pub" "$ssh/authorized_keys"
	cat >"$ssh/sshd_config" <<-EOF
		ListenAddress $STOR_ADDR:$SSH_PORT
		HostKey $ssh/host_key
		PidFile $ssh/sshd.pid
		AuthorizedKeysFile $ssh/authorized_keys
		PermitRootLogin prohibit-password
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		Subsystem sftp internal-sftp
		LogLevel ERROR
	EOF
	ip netns add "$STOR_NS" && NAMESPACES+=("$STOR_NS")
	ip netns add "$NODE_NS" && NAMESPACES+=("$NODE_NS")
	ip link add "$VETH_STOR" type veth peer name "$VETH_NODE"
	ip link set "$VETH_STOR" netns "$STOR_NS"
	ip link set "$VETH_NODE" netns "$NODE_NS"
	ip -n "$STOR_NS" addr add "$STOR_ADDR/30" dev "$VETH_STOR"
	ip -n "$NODE_NS" addr add "$NODE_ADDR/30" dev "$VETH_NODE"
	ip -n "$STOR_NS" link set lo up
	ip -n "$NODE_NS" link set lo up
	ip -n "$STOR_NS" link set "$VETH_STOR" up
	ip -n "$NODE_NS" link set "$VETH_NODE" up
	# Data flows storage -> node: shape the storage side's egress like a NAS uplink.
	ip netns exec "$STOR_NS" tc qdisc add dev "$VETH_STOR" root tbf rate "$NET_RATE" \
		burst 256kb latency 50ms
	if [ ! -d /run/sshd ]; then # sshd's privilege separation directory
		mkdir -m 755 /run/sshd
		RUN_SSHD_MADE=1
	fi
	ip netns exec "$STOR_NS" /usr/sbin/sshd -D -e -f "$ssh/sshd_config" \
		>"$WORK/logs/sshd.log" 2>&1 &
	DAEMONS+=($!)
	# sshfs runs in the node's network namespace but mounts in ours, so mows can use it.
	SSHFS_MNT=$WORK/mnt/sshfs
	local i
	for ((i = 0; i < 50; i++)); do # sshd needs a moment to listen
		[ -z "$(ip netns exec "$STOR_NS" ss -Hltn "sport = :$SSH_PORT")" ] || break
		sleep 0.1
	done
	start_daemon "$SSHFS_MNT" "$WORK/logs/sshfs.log" \
		nsenter --net="/run/netns/$NODE_NS" -- sshfs -f -F /dev/null \
		"root@$STOR_ADDR:$NETMODEL" "$SSHFS_MNT" -o ro,port=$SSH_PORT \
		-o IdentityFile="$ssh/client_key",IdentitiesOnly=yes,BatchMode=yes \
		-o StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR
	set_readahead "$SSHFS_MNT" "$READAHEAD_KB"
}

# first_read_mows label name backing verify_against: one read through a new mows daemon.
first_read_mows() {
	local mnt=$WORK/mnt/$2
	[ "$MOWS_OK" = 1 ] || return 0
	if ! start_mows "$2" "$3"; then
		BEST[$1]=error
		FAILED=1
		return 0
	fi
	measure "$1" read $(model_files "$mnt")
	if [ "$2" = mows-cold ] && [ -z "${COLD_MEM:-}" ]; then
		COLD_MEM="$(resident "$3") $(resident "$mnt") $(($(awk '$1 == "HugetlbPages:" { print $2 }' /proc/"$MOWS_PID"/status) * 1024))"
	fi
	if [ -n "$4" ] && [ -z "${VERIFIED[$2]:-}" ]; then
		verify_copy "$mnt" "$4" "(a) mows over $3"
		VERIFIED[$2]=1
	fi
	FROM_BACKING[$2]=$(json_get "$(mows_status "$MOWS_SOCK")" bytes_from_backing)
	unmount_one "$mnt"
}
declare -A VERIFIED FROM_BACKING

section_a() {
	cpu_idle_note "(a)"
	local r step back_res mows_res cold_huge
	NETMODEL=$WORK/netmodel
	log "(a) generating a $(gib "$NET_SIZE_B") model for the network test"
	"$WORK/bin/genmodel" "$NETMODEL" "$NET_SIZE_B" "$SHARDS" 2
	net_setup
	log "(a) storage link: tc tbf rate $NET_RATE; sshfs at $SSHFS_MNT"
	for ((r = 1; r <= NET_ROUNDS; r++)); do
		for step in $(in_order "$r" net.direct net.mows local.direct local.mows); do
			drop_caches
			case $step in
			net.direct) measure a.net.direct read $(model_files "$SSHFS_MNT") ;;
			net.mows) first_read_mows a.net.mows mows-net "$SSHFS_MNT" "$NETMODEL" ;;
			local.direct) measure a.local.direct read $(model_files "$MODEL") ;;
			local.mows) first_read_mows a.local.mows mows-cold "$MODEL" "" ;;
			esac
		done
	done
	row "(a) first read, backing on sshfs over $NET_RATE, cold daemon, read() 1 MiB" \
		a.net.mows "sshfs direct" a.net.direct 0.9
	row "(a) first read, local-disk backing, cold daemon, read() 1 MiB" \
		a.local.mows "local disk direct" a.local.direct ""
	if [ -n "${COLD_MEM:-}" ]; then
		read -r back_res mows_res cold_huge <<<"$COLD_MEM"
		ROWS+=("| (a) memory right after that cold read through mows | page cache: backing files $(gib "$back_res") + mows files $(gib "$mows_res"); daemon $(gib "$cold_huge") | direct read: 1 copy ($(gib "$MODEL_B")) | - | info | - |")
		NOTES+=("(a) memory: measured with mincore (fincore) right after the first cold mows read; backing-file pages in the page cache are clean and reclaimable, but until reclaimed they are a copy beside mows' own page cache and its daemon cache.")
	fi
	NOTES+=("(a) network: storage netns (sshd, $STOR_ADDR) -> node netns (sshfs, $NODE_ADDR) over a veth shaped by \`tc tbf rate $NET_RATE burst 256kb latency 50ms\`; model $(gib "$NET_SIZE_B"); sshfs read_ahead_kb=$READAHEAD_KB; page cache dropped and a new mows daemon before every mows read. bytes_from_backing after the last mows read: ${FROM_BACKING[mows-net]:-?}.")
	NOTES+=("(a) local: on a fast local backing FUSE itself is the limit, not the disk: a cold mows read cannot beat the memfs FUSE baseline of (b), which serves from memory, so this row is for information.")
	unmount_one "$SSHFS_MNT"
}

# --- (b) daemon cache warm, kernel cache dropped ---------------------------------------------
TMPFS=$WORK/tmpfs
TMPFS_HUGE=$WORK/tmpfs-huge
MOWS_MNT=$WORK/mnt/mows

# setup_warm_mows [name [mows-fuse options...]]: a mows daemon (default: "mows") with its
# cache warm and the model read through it once.
setup_warm_mows() {
	local st used i name=${1:-mows}
	shift || true
	log "starting mows ($name) over $MODEL"
	start_mows "$name" "$MODEL" "$@" || return 1
	log "mows mounted; prefetching"
	if [ "$name" = mows ]; then
		MOWS_MAIN_PID=$MOWS_PID
		MOWS_MAIN_SOCK=$MOWS_SOCK
	fi
	if ! fg_run timeout -k 5 "$TIMEOUT" "$ROOT/mowsctl" -s "$MOWS_SOCK" prefetch \
		$(model_files "$WORK/mnt/$name") >"$WORK/logs/prefetch.log" 2>&1; then
		NOTES+=("mowsctl prefetch failed: $(head -c 300 "$WORK/logs/prefetch.log" | tr '\n' ' ')")
	fi
	for ((i = 0; i < 600; i++)); do # prefetch may return before the fills finish
		st=$(mows_status "$MOWS_SOCK")
		used=$(json_get "$st" bytes_from_backing)
		[[ $used =~ ^[0-9]+$ ]] && [ "$used" -ge "$MODEL_B" ] && break
		sleep 0.1
	done
	log "after prefetch: $(head -c 400 <<<"$st")"
	# Read everything once as well, so the cache is warm even if prefetch did less.
	if ! fg_run timeout -k 5 "$TIMEOUT" "$WORK/bin/reader" -m read \
		$(model_files "$WORK/mnt/$name") >/dev/null; then
		log "reading the model through mows failed"
		return 1
	fi
	log "verifying the data mows serves"
	verify_copy "$WORK/mnt/$name" "$MODEL" "mows ($name) over local disk"
	[ "$name" = mows ] || return 0
	WARM_STATUS=$(mows_status "$MOWS_SOCK")
	WARM_FROM_BACKING=$(json_get "$WARM_STATUS" bytes_from_backing)
	MOWS_HUGEPAGES=$(json_get "$WARM_STATUS" memory.hugepages)
	if [ "$HUGEPAGES" != off ] && [ "$MOWS_HUGEPAGES" != hugetlb ] && [ "$MOWS_HUGEPAGES" != files ]; then
		NOTES+=("mows ran with hugepages '$MOWS_HUGEPAGES', not hugetlb: the pool was too small when it started ($(grep -E 'HugePages_(Total|Free|Rsvd)' /proc/meminfo | tr -s ' \n' ' ')).")
	fi
	MOWS_RA=$(get_readahead "$MOWS_MNT")
	if [ "$MOWS_RA" != "$READAHEAD_KB" ]; then
		NOTES+=("**mows mount read_ahead_kb is $MOWS_RA, expected $READAHEAD_KB from --readahead-kb.**")
	fi
}

# Notes whether the daemon went back to the backing since it was warmed.
check_still_warm() {
	local now
	now=$(json_get "$(mows_status "$MOWS_MAIN_SOCK")" bytes_from_backing)
	if [[ $now =~ ^[0-9]+$ && $WARM_FROM_BACKING =~ ^[0-9]+$ ]]; then
		if [ "$now" -gt "$WARM_FROM_BACKING" ]; then
			NOTES+=("**$1: mows read $((now - WARM_FROM_BACKING)) bytes from the backing although its cache was warm (max_memory $MAXMEM, model $(gib "$MODEL_B")).**")
			WARM_FROM_BACKING=$now
		fi
	else
		NOTES+=("$1: could not read bytes_from_backing from \`mowsctl status --json\`.")
	fi
}

section_b() {
	cpu_idle_note "(b)"
	local r mode who memfs=$WORK/mnt/memfs plain=$WORK/mnt/mows-plain
	local -A dir=([mows]=$MOWS_MNT [memfs]=$memfs [tmpfs]=$TMPFS [plain]=$plain)
	# The ordinary path beside passthrough: a second daemon with passthrough = off.
	if [ "$MOWS_OK" = 1 ] && ! setup_warm_mows mows-plain --passthrough=off; then
		NOTES+=("**mows with --passthrough=off did not start or serve; no (b) plain rows.**")
		FAILED=1
	fi
	start_daemon "$memfs" "$WORK/logs/memfs.log" "$BENCH/memfs" "$MODEL" "$memfs" -f \
		-o ro,fsname=mows-bench-memfs,subtype=memfs
	set_readahead "$memfs" "$READAHEAD_KB"
	mkdir -p "$TMPFS_HUGE"
	mount -t tmpfs -o "size=$((MODEL_B / 1048576 + 64))m,huge=always" mows-bench "$TMPFS_HUGE"
	MOUNTS+=("$TMPFS_HUGE")
	cp "$MODEL"/* "$TMPFS_HUGE"/
	[ "$MOWS_OK" = 1 ] && warm_up $(model_files "$MOWS_MNT") $(model_files "$plain")
	warm_up $(model_files "$memfs")
	warm_up $(model_files "$TMPFS") $(model_files "$TMPFS_HUGE")
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in read mmap; do
			for who in $(in_order "$r" mows memfs tmpfs plain); do
				drop_caches
				[ "$who" = plain ] && [ "$MOWS_OK" != 1 ] && continue
				measure "b.$who.$mode" "$mode" $(model_files "${dir[$who]}")
			done
			drop_caches
			measure "b.tmpfshuge.$mode" "$mode" $(model_files "$TMPFS_HUGE")
		done
	done
	check_still_warm "(b)"
	row "(b) daemon cache warm, page cache dropped, read() 1 MiB" \
		b.mows.read "memfs (FUSE baseline)" b.memfs.read 0.9
	row "(b) daemon cache warm, page cache dropped, mmap+memcpy" \
		b.mows.mmap "tmpfs" b.tmpfs.mmap 0.8
	row "(b) same, read() 1 MiB, vs tmpfs" b.mows.read "tmpfs" b.tmpfs.read ""
	row "(b) same, mmap+memcpy, vs FUSE baseline" b.mows.mmap "memfs" b.memfs.mmap ""
	row "(b) same, mmap+memcpy, vs tmpfs with huge=always" \
		b.mows.mmap "tmpfs huge=always" b.tmpfshuge.mmap 0.9
	row "(b) same, read() 1 MiB, vs tmpfs with huge=always" \
		b.mows.read "tmpfs huge=always" b.tmpfshuge.read 0.9
	row "(b) passthrough = off (the ordinary path), read() 1 MiB" \
		b.plain.read "memfs (FUSE baseline)" b.memfs.read 0.9
	row "(b) passthrough = off (the ordinary path), mmap+memcpy" \
		b.plain.mmap "tmpfs" b.tmpfs.mmap 0.8
	NOTES+=("(b) mows runs with its defaults: the cache in files on its own huge-page tmpfs and passthrough = auto, so every open of the warm model is a passthrough open onto those files (see the daemon log); mows-plain is a second daemon with --passthrough=off, warmed the same way: the ordinary FUSE path.")
	NOTES+=("(b) memfs (test/bench/memfs.c) serves the model from anonymous memory (MADV_HUGEPAGE) with fuse_reply_buf, multithreaded, keep_cache; its read_ahead_kb raised to $READAHEAD_KB like mows'. tmpfs is mounted with default options (4 KiB pages, like /dev/shm here); the huge=always row is for context only.")
	unmount_one "$memfs"
	unmount_one "$TMPFS_HUGE"
	is_mounted "$plain" && unmount_one "$plain"
}

# --- (c) kernel page cache warm ------------------------------------------------------------
section_c() {
	cpu_idle_note "(c)"
	local r mode who
	local -A dir=([mows]=$MOWS_MNT [tmpfs]=$TMPFS)
	# Fill the page cache; no drop_caches from here on in this section.
	GUARD_DROPS=$(drops_by_others)
	fg_run timeout -k 5 "$TIMEOUT" "$WORK/bin/reader" -m read $(model_files "$MOWS_MNT") \
		>/dev/null || true
	fg_run "$WORK/bin/reader" -m read $(model_files "$TMPFS") >/dev/null
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in read mmap; do
			for who in $(in_order "$r" mows tmpfs); do
				measure "c.$who.$mode" "$mode" $(model_files "${dir[$who]}")
			done
		done
	done
	GUARD_DROPS=""
	check_still_warm "(c)"
	row "(c) page cache warm, read() 1 MiB" c.mows.read "tmpfs" c.tmpfs.read 0.9
	row "(c) page cache warm, mmap+memcpy" c.mows.mmap "tmpfs" c.tmpfs.mmap 0.9
}

# --- (d) four processes mmapping the same files -------------------------------------------
section_d() {
	cpu_idle_note "(d)"
	local cached0=0 cached1=0 sys_huge rss huge growth res daemon total naive met try before
	# Page cache growth is only meaningful if nobody else dropped caches in between.
	for ((try = 1; try <= 3; try++)); do
		before=$(drops_by_others)
		drop_caches
		cached0=$(meminfo_kb Cached)
		if ! run_reader mmap -p 4 $(model_files "$MOWS_MNT"); then
			log "(d): a reader failed"
			FAILED=1
			RATE=error
			break
		fi
		cached1=$(meminfo_kb Cached)
		[ "$(drops_by_others)" != "$before" ] || break
		DISTURBED=$((DISTURBED + 1))
		log "(d): another process dropped the page cache meanwhile; repeating"
	done
	[ "$RATE" = error ] && BEST[d.mows.mmap4]=error || record d.mows.mmap4 "$RATE"
	growth=$(((cached1 - cached0) * 1024))
	# Cached is system-wide, so other work on the machine adds to it; mincore() on the
	# model's files counts just their pages.
	res=$(resident "$MOWS_MNT")
	sys_huge=$((($(meminfo_kb HugePages_Total) - $(meminfo_kb HugePages_Free)) * 2097152))
	rss=$(($(awk '$1 == "VmRSS:" { print $2 }' /proc/"$MOWS_MAIN_PID"/status) * 1024))
	# VmRSS leaves hugetlb out; the daemon's own HugetlbPages is exact even when other
	# processes on the machine use hugetlb too (then the system-wide count is not).
	huge=$(($(awk '$1 == "HugetlbPages:" { print $2 }' /proc/"$MOWS_MAIN_PID"/status) * 1024))
	daemon=$((rss + huge))
	total=$((growth + daemon))
	naive=$((4 * MODEL_B))
	met="**no**"
	if [ "$res" -le $((MODEL_B + 16 * 1048576)) ] && [ "$daemon" -le $((MAXMEM_B + 256 * 1048576)) ]
	then
		met=yes
	fi
	if [ "$growth" -gt $((res * 11 / 10 + 64 * 1048576)) ]; then
		NOTES+=("(d) Cached grew $(gib $((growth - res))) more than the model files' own pages: page cache of other processes on the machine; met? is judged on the model files' pages (mincore).")
	fi
	ROWS+=("| (d) 4 processes mmap the model at once: memory | page cache +$(gib "$growth") (model files resident: $(gib "$res")), daemon $(gib "$daemon") | naive per-process copies $(gib "$naive") | $(awk -v a="$total" -v b="$naive" 'BEGIN { printf "%.2fx", a / b }') | 1 page-cache copy ($(gib "$MODEL_B")) + daemon cache (<= $MAXMEM) | $met |")
	ROWS+=("| (d) 4 processes mmap at once: aggregate | ${BEST[d.mows.mmap4]:-n/a} GB/s | - | - | info | - |")
	NOTES+=("(d) page cache growth = Cached in /proc/meminfo after minus before (after drop_caches); daemon = VmRSS $(mib "$rss") + its HugetlbPages $(gib "$huge") (/proc/PID/status; system-wide HugePages_Total - HugePages_Free was $(gib "$sys_huge")). With the cache in files VmRSS counts the cache files the daemon maps (shmem), the same pages passthrough readers map.")
	check_still_warm "(d)"
}

# --- (e) rclone mount, cache warm ------------------------------------------------------------
section_e() {
	cpu_idle_note "(e)"
	local r mode who mnt=$WORK/mnt/rclone cache_b rclone_ra
	local -A dir=([mows]=$MOWS_MNT [rclone]=$WORK/mnt/rclone)
	: >"$WORK/rclone.conf"
	start_daemon "$mnt" "$WORK/logs/rclone.log" rclone mount "$MODEL" "$mnt" \
		--config "$WORK/rclone.conf" --read-only --vfs-cache-mode full \
		--cache-dir "$WORK/rclone-cache" --log-level ERROR
	rclone_ra=$(get_readahead "$mnt")
	set_readahead "$mnt" "$READAHEAD_KB"
	warm_up $(model_files "$mnt") # fills rclone's cache
	cache_b=$(du -sb "$WORK/rclone-cache" | cut -f1)
	[ "$MOWS_OK" = 1 ] && warm_up $(model_files "$MOWS_MNT")
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in read mmap; do
			for who in $(in_order "$r" mows rclone); do
				drop_caches
				measure "e.$who.$mode" "$mode" $(model_files "${dir[$who]}")
			done
		done
		# rclone as it comes: FUSE's default 128 KiB readahead (files opened after this)
		set_readahead "$mnt" "$rclone_ra"
		drop_caches
		measure e.rclone128.mmap mmap $(model_files "$mnt")
		set_readahead "$mnt" "$READAHEAD_KB"
	done
	check_still_warm "(e)"
	row "(e) caches warm, page cache dropped, mmap+memcpy, rclone read_ahead_kb=$READAHEAD_KB" \
		e.mows.mmap "rclone vfs full" e.rclone.mmap 5
	row "(e) caches warm, page cache dropped, read() 1 MiB" \
		e.mows.read "rclone vfs full" e.rclone.read ""
	row "(e) same, mmap+memcpy, rclone at its default read_ahead_kb=$rclone_ra" \
		e.mows.mmap "rclone vfs full" e.rclone128.mmap 5
	NOTES+=("(e) rclone $(rclone version 2>/dev/null | head -1 | cut -d' ' -f2) mount --read-only --vfs-cache-mode full over the same local model, cache dir on local disk ($(gib "$cache_b") after the warming read), read_ahead_kb raised to $READAHEAD_KB like the others for the goal row (rclone cannot raise it itself: its --max-read-ahead only caps it). With the page cache dropped rclone reads its cache files from disk; mows serves from its memory cache.")
	unmount_one "$mnt"
}

# --- (f) an object store under mows: s3fs over a local S3 server ------------------------------
S3_NPM=${MOWS_NPM_DIR:-/var/cache/mows-npm}

# s3_requests_now: lines in the S3 server's request log so far.
s3_requests_now() { wc -l <"$WORK/s3-requests.log"; }

# s3_mount_bucket mnt opts: mounts the bucket with s3fs (which daemonizes); waits 15 s.
s3_mount_bucket() {
	local i
	mkdir -p "$1"
	s3fs model "$1" -o "passwd_file=$WORK/s3.passwd,url=http://127.0.0.1:$S3_PORT,use_path_request_style${2:+,$2}" \
		>>"$WORK/logs/s3fs.log" 2>&1 || return 1
	MOUNTS+=("$1")
	for ((i = 0; i < 150; i++)); do
		is_mounted "$1" && stat "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

s3_setup() {
	local i
	S3_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	mkdir -p "$WORK/s3-data" "$WORK/s3-model"
	: >"$WORK/s3-requests.log"
	node "$ROOT/test/s3/s3server.js" "$WORK/s3-data" "$S3_PORT" model "$WORK/s3-requests.log" \
		>"$WORK/logs/s3server.log" 2>&1 </dev/null &
	S3_PID=$!
	DAEMONS+=($!)
	for ((i = 0; i < 200; i++)); do
		grep -q '^listening' "$WORK/logs/s3server.log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '^listening' "$WORK/logs/s3server.log" || { log "the S3 server did not start"; return 1; }
	printf 'S3RVER:S3RVER\n' >"$WORK/s3.passwd"
	chmod 600 "$WORK/s3.passwd"
	"$WORK/bin/genmodel" "$WORK/s3-model" "$(size_bytes "$S3_SIZE")" "$SHARDS" 1
	s3_mount_bucket "$WORK/mnt/s3-upload" "" || { log "s3fs cannot mount the bucket"; return 1; }
	cp "$WORK/s3-model"/* "$WORK/mnt/s3-upload/" && unmount_one "$WORK/mnt/s3-upload"
	# No stat cache in s3fs: every stat mows made would reach the store (as once it expired).
	s3_mount_bucket "$WORK/mnt/s3" "ro,max_stat_cache_size=0"
}

# section_f_stopped MNT: re-reads of the warm model through mows with the store stopped
# (SIGSTOP of the S3 server, an overloaded store) and running, interleaved round by round
# (the order rotates) over at least 9 rounds. Each measurement reads the model 4 times: one
# read of a small model takes tens of ms, where one scheduling hiccup moves the rate by half.
# The row's ratio is the median of the rounds' paired ratios (stopped / running, measured
# back to back), which one lucky or unlucky round cannot move as it moves a best-of; a
# control pair (a second read with the store running: running2 / running) measures the
# noise floor in the same rounds, so a ratio inside the control's range is noise, not a cost.
section_f_stopped() {
	local mnt=$1 r who rounds=$((ROUNDS > 9 ? ROUNDS : 9)) ratio control
	local -a files order=(running stopped running2)
	read -ra files <<<"$(model_files "$mnt")"
	for ((r = 0; r < rounds; r++)); do
		for who in "${order[@]:r % 3}" "${order[@]:0:r % 3}"; do
			[ "$who" = stopped ] && kill -STOP "$S3_PID"
			drop_caches
			measure "f.mows.$who" read "${files[@]}" "${files[@]}" "${files[@]}" "${files[@]}"
			[ "$who" = stopped ] && kill -CONT "$S3_PID"
		done
	done
	ratio=$(paired_median "${RAW[f.mows.stopped]:-}" "${RAW[f.mows.running]:-}")
	control=$(paired_median "${RAW[f.mows.running2]:-}" "${RAW[f.mows.running]:-}")
	ROWS+=("| (f) store stopped (SIGSTOP): re-read of every cached file through mows, vs the store running; median of $rounds interleaved pairs (control: running / running ${control% *}x, range ${control#* }) | ${BEST[f.mows.stopped]:-n/a} GB/s (best) | store running ${BEST[f.mows.running]:-n/a} GB/s (best) | ${ratio% *}x | >= 0.9x | $(awk -v m="${ratio% *}" 'BEGIN { print (m + 0 >= 0.9) ? "yes" : "**no**" }') |")
	NOTES+=("(f) store stopped vs running: paired ratios range ${ratio#* }, median ${ratio% *}x; the control (two reads with the store running) ranges ${control#* }, median ${control% *}x. The re-read path reaches nothing below mows (the warm-pass row counts 0 requests at the server; with passthrough the reads do not even enter the daemon), so a spread as wide as the control's is this machine's noise; the CPU-idle note says how busy it was.")
}

# paired_median "A1 A2 ..." "B1 B2 ...": "MEDIAN MIN-MAX" of the ratios Ai / Bi.
paired_median() {
	awk -v s="$1" -v r="$2" 'BEGIN {
		n = split(s, a, " "); m = split(r, b, " "); k = 0
		for (i = 1; i <= n && i <= m; i++) if (b[i] > 0) v[++k] = a[i] / b[i]
		for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		if (!k) { print "n/a n/a"; exit }
		printf "%.2f %.2f-%.2f", k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2, v[1], v[k] }'
}

section_f() {
	cpu_idle_note "(f)"
	local r who s3=$WORK/mnt/s3 mnt=$WORK/mnt/mows-s3 n0 n1 i st used model_s3=0 f
	if ! command -v s3fs >/dev/null || ! command -v node >/dev/null ||
		[ ! -d "$S3_NPM/node_modules/s3rver" ]; then
		NOTES+=("**(f) not measured: needs s3fs, node and the npm package s3rver in $S3_NPM (make deps).**")
		FAILED=1
		return 0
	fi
	if ! s3_setup; then
		NOTES+=("**(f) not measured: the local S3 server or s3fs did not come up; logs in $WORK/logs.**")
		FAILED=1
		return 0
	fi
	for f in "$WORK/s3-model"/*; do model_s3=$((model_s3 + $(stat -c %s "$f"))); done
	local -A dir=([mows]=$mnt [s3fs]=$s3)
	if start_mows mows-s3 "$s3"; then
		fg_run timeout -k 5 "$TIMEOUT" "$WORK/bin/reader" -m read $(model_files "$mnt") >/dev/null || true
		for ((i = 0; i < 300; i++)); do # the cold read's fills may end after the reader
			used=$(json_get "$(mows_status "$MOWS_SOCK")" bytes_from_backing)
			[[ $used =~ ^[0-9]+$ ]] && [ "$used" -ge "$model_s3" ] && break
			sleep 0.1
		done
		verify_copy "$WORK/s3-model" "$mnt" "(f)"
	fi
	warm_up $(model_files "$s3")
	for ((r = 1; r <= ROUNDS; r++)); do
		for who in $(in_order "$r" mows s3fs); do
			drop_caches
			measure "f.$who.read" read $(model_files "${dir[$who]}")
		done
	done
	row "(f) warm read over s3fs, page cache dropped, read() 1 MiB" \
		f.mows.read "s3fs direct" f.s3fs.read 10
	# A warm pass, past the kernel's name and attribute caches (1 s): every file read, every
	# name listed and stat'ed; the S3 server counts what reaches the store.
	if [ "$MOWS_OK" = 1 ] && is_mounted "$mnt"; then
		sleep 2.5
		n0=$(s3_requests_now)
		drop_caches
		(cd "$mnt" && cat -- * >/dev/null && ls -lR >/dev/null) || FAILED=1
		n1=$(s3_requests_now)
		ROWS+=("| (f) storage requests during a warm pass over the model through mows (cat of every file and ls -lR; all requests at the S3 server) | $((n1 - n0)) | - | - | 0 | $([ $((n1 - n0)) -eq 0 ] && echo yes || echo '**no**') |")
		section_f_stopped "$mnt"
		unmount_one "$mnt"
	fi
	NOTES+=("(f) s3fs $(s3fs --version 2>/dev/null | head -1 | grep -o 'V[0-9.]*') -o ro,max_stat_cache_size=0 over s3rver on loopback (test/s3/s3server.js), a $(gib "$model_s3") model in $SHARDS shards. mows was warmed by one read through it; the direct s3fs read downloads again (s3fs keeps no copy of a closed file). The S3 server, s3fs and mows share this machine's CPUs.")
	unmount_one "$s3"
}

# --- (g) node memory after a cold read with open_wait = complete; start-up time ---------------
section_g() {
	cpu_idle_note "(g)"
	local mnt=$WORK/mnt/mows-wait c0 c1 back store node met ratio t0 ms
	[ "$MOWS_OK" = 1 ] || return 0
	drop_caches
	c0=$(meminfo_kb Cached)
	t0=$(date +%s%N)
	if ! start_mows mows-wait "$MODEL" --open-wait=complete; then
		FAILED=1
		return 0
	fi
	ms=$((($(date +%s%N) - t0) / 1000000))
	measure g.mows.cold read $(model_files "$mnt")
	c1=$(meminfo_kb Cached)
	back=$(resident "$MODEL")
	store=$(json_get "$(mows_status "$MOWS_SOCK")" memory.used)
	# Cached counts shmem (the cache store) and every page cache; the backing files' clean
	# pages are reclaimable and counted apart, as in (a).
	node=$(((c1 - c0) * 1024 - back))
	ratio=$(awk -v a="$node" -v b="$MODEL_B" 'BEGIN { printf "%.2fx", a / b }')
	met=$(awk -v a="$node" -v b="$MODEL_B" 'BEGIN { print (a <= 1.05 * b) ? "yes" : "**no**" }')
	ROWS+=("| (g) node memory after a cold read, open_wait = complete (passthrough), page cache dropped before | $(gib "$node") (cache store $(gib "$store"); backing files' page cache $(gib "$back") apart) | the model $(gib "$MODEL_B") | $ratio | <= 1.05x | $met |")
	ROWS+=("| (g) that cold read, read() 1 MiB (opens wait for their file) | ${BEST[g.mows.cold]:-?} GB/s | - | - | info | - |")
	met=$([ "$ms" -le 500 ] && echo yes || echo "**no**")
	ROWS+=("| (g) mount ready after start, max_memory $MAXMEM | $ms ms | - | - | <= 500 ms | $met |")
	verify_copy "$mnt" "$MODEL" "(g) mows with open_wait = complete"
	NOTES+=("(g) node memory = growth of Cached in /proc/meminfo (page cache and shmem) over the cold read, less the backing files' pages (fincore); other work on the machine adds to it.")
	unmount_one "$mnt"
}

# --- run -------------------------------------------------------------------------------------
if want a; then section_a; fi
if want b || want c || want d || want e || want g; then
	mkdir -p "$TMPFS"
	mount -t tmpfs -o "size=$((MODEL_B / 1048576 + 64))m" mows-bench "$TMPFS"
	MOUNTS+=("$TMPFS")
	cp "$MODEL"/* "$TMPFS"/
	if [ "$MOWS_OK" = 1 ] && ! setup_warm_mows; then
		MOWS_OK=0
		FAILED=1
		NOTES+=("**mows-fuse did not mount over $MODEL; no mows numbers in (b)-(e). Log: $(tail -n 5 "$WORK/logs/mows.log" | tr '\n' ' ')**")
	fi
	if want b; then section_b; fi
	if want c; then section_c; fi
	if want d && [ "$MOWS_OK" = 1 ]; then section_d; fi
	if want e; then section_e; fi
	if want g; then section_g; fi
fi
if want f; then section_f; fi

{
	echo "## mows benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(gib $(($(meminfo_kb MemTotal) * 1024))) RAM, Linux $(uname -r)."
	echo "Model: $(gib "$MODEL_B") in $SHARDS safetensors shards; best of $ROUNDS interleaved rounds ($NET_ROUNDS for (a)), order reversed every other round; GB/s = 10^9 bytes/s."
	echo "mows: --max-memory=$MAXMEM --hugepages=$HUGEPAGES (status says: ${MOWS_HUGEPAGES:-?}) --readahead-kb=$READAHEAD_KB (mount read_ahead_kb: ${MOWS_RA:-?})."
	echo
	echo "| scenario | mows | comparison | ratio | goal | met? |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	for n in "${NOTES[@]}"; do echo "- $n"; done
	echo "- The slowest mows start (mount visible in /proc/mounts) took ${MOWS_START_MAX_MS} ms; with the cache in files memory is taken as chunks fill (with the slab, a populate thread runs a bounded lead ahead)."
	[ "$DISTURBED" = 0 ] || echo "- Other processes dropped the page cache during $DISTURBED page-cache-warm measurements (seen in /proc/vmstat drop_pagecache); those were warmed again and repeated (at most twice)."
	echo "- GB/s of every round:$(for l in "${LABELS[@]}"; do printf ' %s [%s];' "$l" "${RAW[$l]}"; done)"
	echo "- CPU idle in the second before each section (the rest is other work on the machine): ${IDLE_NOTES%, }; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$RESULTS"

exit $FAILED
