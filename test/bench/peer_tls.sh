#!/bin/bash
# TLS on vs off through the whole chunk path: mows-peerbench fetching 4 MiB chunks from a
# live mows-fuse over loopback TCP (mux, serve workers, cache), once from a daemon with TLS
# (PSK) and once from one with tls = off + insecure, in alternating order, ROUNDS rounds.
# Prints every run and a markdown table: each mode's best GB/s, the TLS/plain ratio, and
# the median CPU seconds per GB of the reader (mows-peerbench) and of the serving mows-fuse;
# then one more run for the reader's SHA-256 check (rdma_verify) per GB, which TCP chunks
# skip; last, AES-128-GCM on one core (openssl speed), the crypto bound. Run as root (FUSE
# mounts); everything it makes is undone on exit, and a run that fails fails the script.
#
#   MOWS_PTLS_ROUNDS [5]  MOWS_PTLS_SECONDS [5]  MOWS_PTLS_INFLIGHT [4]  MOWS_PTLS_SIZE [256]
#   (MiB)  MOWS_PTLS_TASKSET ["", e.g. "0 1": pin the serving daemons to CPU 0 and the
#   reader to CPU 1, a core per side]  MOWS_PTLS_BASELINE ["": a directory holding another
#   build's mows-fuse and mows-peerbench, e.g. of the commit before a change: its TLS is
#   measured in the same rounds, as a third row]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${MOWS_PTLS_ROUNDS:-5}
SECS=${MOWS_PTLS_SECONDS:-5}
INFLIGHT=${MOWS_PTLS_INFLIGHT:-4}
SIZE_MB=${MOWS_PTLS_SIZE:-256}
PIN=(${MOWS_PTLS_TASKSET:-})
BASE=${MOWS_PTLS_BASELINE:-}
WORK=$(mktemp -d /tmp/mows-ptls.$$.XXXXXX)
PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for m in "$WORK"/mnt-*; do
		[ -d "$m" ] && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "peer_tls.sh: run as root (FUSE mounts)" >&2; exit 1; }
for b in mows-fuse mows-peerbench; do
	[ -x "$ROOT/$b" ] || { echo "peer_tls.sh: $ROOT/$b missing; run make all" >&2; exit 1; }
done

mkdir -p "$WORK/backing"
head -c "$((SIZE_MB << 20))" /dev/urandom >"$WORK/backing/model.bin"
head -c 32 /dev/urandom >"$WORK/secret"
chmod 600 "$WORK/secret"

cpu_for() { # side (0 daemon, 1 reader) -> taskset prefix
	[ ${#PIN[@]} -eq 2 ] && echo "taskset -c ${PIN[$1]}" || true
}

# start NAME PORT ARGS...: a foreground daemon (of $BIN); echoes its pid
start() {
	local name=$1 port=$2; shift 2
	mkdir -p "$WORK/mnt-$name"
	$(cpu_for 0) "${BIN:-$ROOT}/mows-fuse" -f --backing "$WORK/backing" --listen "127.0.0.1:$port" \
		--node-id "ptls-$name-$$" --max-memory 512M --verify off \
		--control-socket "$WORK/$name.sock" "$@" "$WORK/mnt-$name" \
		>"$WORK/$name.log" 2>&1 &
	echo $!
}

PORT_TLS=$((20000 + $$ % 20000))
PORT_OFF=$((PORT_TLS + 1))
PID_TLS=$(start tls "$PORT_TLS" --secret-file "$WORK/secret")
PIDS+=("$PID_TLS")
PID_OFF=$(start off "$PORT_OFF" --tls off --insecure true)
PIDS+=("$PID_OFF")
MODES="tls off"
if [ -n "$BASE" ]; then
	PORT_BASE=$((PORT_TLS + 2))
	PID_BASE=$(BIN=$BASE start base "$PORT_BASE" --secret-file "$WORK/secret")
	PIDS+=("$PID_BASE")
	MODES="tls off base"
fi
for name in $MODES; do
	for _ in $(seq 100); do
		mountpoint -q "$WORK/mnt-$name" && break
		sleep 0.1
	done
	mountpoint -q "$WORK/mnt-$name" || { echo "peer_tls.sh: daemon $name did not mount:"; \
		cat "$WORK/$name.log"; exit 1; } >&2
done

# bench MODE SECONDS [ARGS...]: one mows-peerbench run; its output to stdout
bench() {
	local mode=$1 secs=$2 args; shift 2
	local bin=$ROOT
	if [ "$mode" = tls ]; then
		args=(--peer "127.0.0.1:$PORT_TLS" --secret-file "$WORK/secret" --peer-pid "$PID_TLS")
	elif [ "$mode" = base ]; then
		args=(--peer "127.0.0.1:$PORT_BASE" --secret-file "$WORK/secret" --peer-pid "$PID_BASE")
		bin=$BASE
	else
		args=(--peer "127.0.0.1:$PORT_OFF" --tls off --insecure --peer-pid "$PID_OFF")
	fi
	$(cpu_for 1) "$bin/mows-peerbench" "${args[@]}" --backing "$WORK/backing" \
		--file model.bin --transport tcp --seconds "$secs" --inflight "$INFLIGHT" "$@" \
		2>>"$WORK/peerbench.log"
}

# AES-128-GCM GB/s on one core, from openssl speed; empty without openssl.
aes_rate() {
	command -v openssl >/dev/null || return 0
	openssl speed -evp aes-128-gcm -bytes 16384 -seconds 2 2>/dev/null |
		awk '/^AES-128-GCM/ { sub(/k$/, "", $2); print $2 * 1000 / 1e9 }'
}
AES0=$(aes_rate)

# Warm both daemons' caches (a first pass reads the backing).
for mode in $MODES; do bench "$mode" 2 >/dev/null; done

# median MODE COLUMN: the median of a column (2 GB/s, 3 reader, 4 sender) over MODE's runs
median() {
	awk -v m="$1" -v c="$2" '$1 == m { print $c }' "$WORK/runs" | sort -g |
		awk '{ v[NR] = $1 } END { printf "%.3f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# summary MODE: the best GB/s, then the median CPU s/GB of reader and sender
summary() {
	echo "$(awk -v m="$1" '$1 == m && $2 > b { b = $2 } END { print b }' "$WORK/runs")" \
		"$(median "$1" 3)" "$(median "$1" 4)"
}

: >"$WORK/runs"
for r in $(seq "$ROUNDS"); do
	order=$MODES
	[ $((r % 2)) = 0 ] && order=$(echo "$MODES" | tr ' ' '\n' | tac | tr '\n' ' ')
	for mode in $order; do
		out=$(bench "$mode" "$SECS")
		echo "round $r $mode: $(echo "$out" | tr '\n' ' ')"
		gbps=$(echo "$out" | sed -n 's/.*= \([0-9.]*\) GB\/s.*/\1/p')
		here=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) CPU-s per GB here.*/\1/p')
		peer=$(echo "$out" | sed -n 's/.*, \([0-9.]*\) CPU-s per GB on the peer.*/\1/p')
		[ -n "$gbps" ] && [ -n "$here" ] && [ -n "$peer" ] ||
			{ echo "peer_tls.sh: run $r $mode failed: $out" >&2; exit 1; }
		echo "$mode $gbps $here $peer" >>"$WORK/runs"
	done
done

# The SHA-256 check a reader of RDMA-read chunks makes, apart: it would slow both modes.
out=$(bench tls "$SECS" --digest sha256)
echo "digest run: $(echo "$out" | tr '\n' ' ')"
on_d=$(echo "$out" | sed -n 's/^digest sha256: \([0-9.]*\) CPU-s per GB.*/\1/p')
read -r on_g on_h on_p <<<"$(summary tls)"
read -r off_g off_h off_p <<<"$(summary off)"
echo
echo "mows-peerbench, loopback, ${SIZE_MB} MiB file, 4 MiB chunks, $INFLIGHT in flight, warm;"
echo "$ROUNDS interleaved runs of $SECS s${PIN:+, daemon on CPU ${PIN[0]}, reader on CPU ${PIN[1]}}:"
echo "GB/s of the best run, CPU s/GB the median of the runs"
echo
echo "| | GB/s | CPU s/GB, reader | CPU s/GB, serving mows-fuse |"
echo "|---|---|---|---|"
echo "| \`tls = off\` (insecure) | $off_g | $off_h | $off_p |"
echo "| TLS 1.3 (PSK) | $on_g | $on_h | $on_p |"
if [ -n "$BASE" ]; then
	read -r b_g b_h b_p <<<"$(summary base)"
	echo "| TLS 1.3 (PSK), baseline build | $b_g | $b_h | $b_p |"
fi
echo "| SHA-256 check of each chunk (reader) | | $on_d | |"
awk "BEGIN{printf \"\nTLS / plain: %.2fx; one core per end could drive TLS at %.2f GB/s (reader), %.2f GB/s (sender)\n\", $on_g / $off_g, 1 / $on_h, 1 / $on_p}"

# The bound: AES-128-GCM on one core (what OpenSSL's record layer runs), over 16 KiB records;
# measured before and after the runs, the faster one counts (other jobs slow it down).
if [ -n "$AES0" ]; then
	aes1=$(aes_rate)
	aes=$(awk "BEGIN{print ($AES0 > $aes1 ? $AES0 : $aes1)}")
	awk "BEGIN{printf \"AES-128-GCM (openssl speed, 16 KiB records): %.2f GB/s per core = %.3f CPU-s per GB; with the plaintext path, the least TLS can cost is ~%.3f (reader) and ~%.3f (sender) CPU-s per GB; measured %.2fx and %.2fx that\n\", $aes, 1 / $aes, $off_h + 1 / $aes, $off_p + 1 / $aes, $on_h / ($off_h + 1 / $aes), $on_p / ($off_p + 1 / $aes)}"
fi
