#!/usr/bin/env bash
# A node that starts long after its peers, in a simulated cluster of three nodes
# (tools/mows-cluster): the last node of a cold burst, or one whose storage mount came up
# late. Its peers have been probing its address and failing (connection refused) the whole
# time, so each of them backs off from it. When it starts, it connects to them and
# authenticates: that must end their backoff, so every peer sees it up within a few
# heartbeat rounds (here 2.5 s at 250 ms), not after the backoff (before this test: up to
# 64 rounds, 16 s here; a 32-node bench burst saw its last node stay half-connected 120 s).
# timeout: 150
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 1 2
cluster_up --nodes 3 --model "$M" \
	--mows-args "--max-memory=32M --chunk-size=1M --heartbeat=250ms --peer-timeout=1s --request-timeout=3s"
cluster_wait_mesh 20 1 2 3

# Counts the probes of node3's peer port: a line per TCP SYN to port 7070 that reaches node3's
# namespace, naming its source (argv[1] only names this test's scratch dir, so that run.sh
# ends the sniffer should the test stop before it does).
cat >"$SCRATCH/syns.py" <<'EOF2'
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
while True:
    p, addr = s.recvfrom(256)
    if addr[2] == socket.PACKET_OUTGOING or len(p) < 20 or p[9] != 6:
        continue
    ihl = (p[0] & 15) * 4
    if len(p) >= ihl + 14 and struct.unpack("!H", p[ihl + 2:ihl + 4])[0] == 7070 \
            and p[ihl + 13] & 0x12 == 0x02:
        print(socket.inet_ntoa(p[12:16]), flush=True)
EOF2

out=$(mows_cluster kill node3 2>&1) || fail "mows-cluster kill node3: $out"
mows_cluster exec node3 --timeout 60 -- python3 "$SCRATCH/syns.py" "$SCRATCH" >"$SCRATCH/syns" 2>&1 &
sniffer=$!
down0=$SECONDS
# Refused probes until node1 and node2 have each failed six times in a row (the lost link,
# then five probes): their backoff is at its longest (16 heartbeats from the fourth on).
end=$((SECONDS + 45))
for n in 1 2; do
	until [ "$(grep -cx "198.18.1.$n" "$SCRATCH/syns")" -ge 5 ]; do
		kill -0 "$sniffer" 2>/dev/null || fail "the probe counter in node3 ended: $(cat "$SCRATCH/syns")"
		[ $SECONDS -ge $end ] &&
			fail "node$n probed node3 $(grep -cx "198.18.1.$n" "$SCRATCH/syns") times in 45 s (want 5)"
		sleep 0.2
	done
done
note "probes of node3 in the $((SECONDS - down0)) s it was down: $(sort "$SCRATCH/syns" | uniq -c | awk '{ printf "%s from %s; ", $1, $2 }')"
kill "$sniffer" 2>/dev/null
wait "$sniffer" 2>/dev/null
for n in 1 2; do
	cluster_get st "$n" peers 'peer("node3")["state"]'
	[ "$st" != up ] || fail "node$n still sees node3 up after five refused probes"
done

out=$(mows_cluster start node3 2>&1) || fail "mows-cluster start node3: $out"
t0=$(date +%s%N)
cluster_wait_up 20 3 1 2
for n in 1 2; do
	cluster_wait_up 30 "$n" 3
	ms=$((($(date +%s%N) - t0) / 1000000))
	note "node$n sees node3 up $ms ms after node3's daemon started"
	assert_le "$ms" 2500 "ms until node$n sees the late node3 up (heartbeat 250 ms)"
done
note "pass"
