#!/bin/bash
# TLS on vs off through the whole chunk path: mows-peerbench fetching 4 MiB chunks from a
# live mows-fuse over loopback TCP (mux, serve workers, cache), once from a daemon with TLS
# (PSK) and once from one with tls = off + insecure, in alternating order, ROUNDS rounds.
# Prints every run and a markdown table of the best round of each: GB/s, the TLS/plain
# ratio, CPU seconds per GB of the reader (mows-peerbench) and of the serving mows-fuse; then
# one more run for the reader's SHA-256 check (rdma_verify) per GB, which TCP chunks skip. Run as root (FUSE mounts); everything it
# makes is undone on exit.
#
#   MOWS_PTLS_ROUNDS [5]  MOWS_PTLS_SECONDS [5]  MOWS_PTLS_INFLIGHT [4]  MOWS_PTLS_SIZE [256]
#   (MiB)  MOWS_PTLS_TASKSET ["", e.g. "0 1": pin the serving daemons to CPU 0 and the
#   reader to CPU 1, a core per side]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${MOWS_PTLS_ROUNDS:-5}
SECS=${MOWS_PTLS_SECONDS:-5}
INFLIGHT=${MOWS_PTLS_INFLIGHT:-4}
SIZE_MB=${MOWS_PTLS_SIZE:-256}
PIN=(${MOWS_PTLS_TASKSET:-})
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

# start NAME PORT ARGS...: a foreground daemon; echoes its pid
start() {
	local name=$1 port=$2; shift 2
	mkdir -p "$WORK/mnt-$name"
	$(cpu_for 0) "$ROOT/mows-fuse" -f --backing "$WORK/backing" --listen "127.0.0.1:$port" \
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
for name in tls off; do
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
	if [ "$mode" = tls ]; then
		args=(--peer "127.0.0.1:$PORT_TLS" --secret-file "$WORK/secret" --peer-pid "$PID_TLS")
	else
		args=(--peer "127.0.0.1:$PORT_OFF" --tls off --insecure --peer-pid "$PID_OFF")
	fi
	$(cpu_for 1) "$ROOT/mows-peerbench" "${args[@]}" --backing "$WORK/backing" \
		--file model.bin --transport tcp --seconds "$secs" --inflight "$INFLIGHT" "$@" \
		2>>"$WORK/peerbench.log"
}

# Warm both daemons' caches (a first pass reads the backing).
bench tls 2 >/dev/null
bench off 2 >/dev/null

declare -A best
for r in $(seq "$ROUNDS"); do
	order="tls off"
	[ $((r % 2)) = 0 ] && order="off tls"
	for mode in $order; do
		out=$(bench "$mode" "$SECS")
		echo "round $r $mode: $(echo "$out" | tr '\n' ' ')"
		gbps=$(echo "$out" | sed -n 's/.*= \([0-9.]*\) GB\/s.*/\1/p')
		here=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) CPU-s per GB here.*/\1/p')
		peer=$(echo "$out" | sed -n 's/.*, \([0-9.]*\) CPU-s per GB on the peer.*/\1/p')
		if [ -z "${best[$mode]:-}" ] || awk "BEGIN{exit !($gbps > ${best[$mode]%% *})}"; then
			best[$mode]="$gbps $here $peer"
		fi
	done
done

# The SHA-256 check a reader of RDMA-read chunks makes, apart: it would slow both modes.
out=$(bench tls "$SECS" --digest sha256)
echo "digest run: $(echo "$out" | tr '\n' ' ')"
on_d=$(echo "$out" | sed -n 's/^digest sha256: \([0-9.]*\) CPU-s per GB.*/\1/p')
read -r on_g on_h on_p <<<"${best[tls]}"
read -r off_g off_h off_p <<<"${best[off]}"
echo
echo "mows-peerbench, loopback, ${SIZE_MB} MiB file, 4 MiB chunks, $INFLIGHT in flight, warm;"
echo "best of $ROUNDS interleaved runs of $SECS s${PIN:+, daemon on CPU ${PIN[0]}, reader on CPU ${PIN[1]}}"
echo
echo "| | GB/s | CPU s/GB, reader | CPU s/GB, serving mows-fuse |"
echo "|---|---|---|---|"
echo "| \`tls = off\` (insecure) | $off_g | $off_h | $off_p |"
echo "| TLS 1.3 (PSK) | $on_g | $on_h | $on_p |"
echo "| SHA-256 check of each chunk (reader) | | $on_d | |"
awk "BEGIN{printf \"\nTLS / plain: %.2fx; one core per end could drive TLS at %.2f GB/s (reader), %.2f GB/s (sender)\n\", $on_g / $off_g, 1 / $on_h, 1 / $on_p}"
