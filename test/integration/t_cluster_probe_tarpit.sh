#!/usr/bin/env bash
# Probes that wait their turn, in a simulated cluster of two nodes (tools/mows-cluster).
# A node probes the members it has no link to with all connects at once, then one
# handshake after another. Here five addresses listed before node2 accept a connection and
# never answer (a stuck process; in a cold burst, peers busy with 31 handshakes each), so
# node1's connection to node2 waits about 5 s for its turn, while node2 gives an inbound
# handshake 1.5 s. Before this test, that connection was dead when its turn came, every
# round, and node1 did not see node2 up (18 s and more); now a connection that waited its
# turn is opened again, and node1 sees node2 up at the end of its first round (about 5 s).
# timeout: 150
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 1 2
TARPITS=198.18.1.2:7071,198.18.1.2:7072,198.18.1.2:7073,198.18.1.2:7074,198.18.1.2:7075
cluster_up --nodes 2 --model "$M" --mows-args "--max-memory=32M --chunk-size=1M \
--heartbeat=1s --peer-timeout=2s --request-timeout=3s --peers=$TARPITS,198.18.1.1:7070,198.18.1.2:7070"
cluster_wait_mesh 30 1 2

# Five listeners in node2's namespace that accept and never answer (ended with the cluster).
TARPIT='
import socket, sys, time
ls, held = [], []
for port in range(7071, 7076):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("198.18.1.2", port))
    s.listen(64)
    s.setblocking(False)
    ls.append(s)
print("ready", flush=True)
end = time.time() + 110
while time.time() < end:
    for s in ls:
        try:
            held.append(s.accept()[0])
        except BlockingIOError:
            pass
    time.sleep(0.01)
'
mows_cluster exec node2 --timeout 115 -- python3 -c "$TARPIT" >"$SCRATCH/tarpit.out" 2>&1 &
tarpit=$!
end=$((SECONDS + 10))
until grep -q ready "$SCRATCH/tarpit.out" 2>/dev/null; do
	kill -0 "$tarpit" 2>/dev/null || fail "the tarpit listeners did not start: $(cat "$SCRATCH/tarpit.out")"
	[ $SECONDS -ge $end ] && fail "the tarpit listeners not ready after 10 s: $(cat "$SCRATCH/tarpit.out")"
	sleep 0.1
done

# node1 starts again: its first probes meet the tarpits before node2.
out=$(mows_cluster kill node1 2>&1) || fail "mows-cluster kill node1: $out"
out=$(mows_cluster start node1 2>&1) || fail "mows-cluster start node1: $out"
t0=$(date +%s%N)
cluster_wait_up 25 1 2
ms=$((($(date +%s%N) - t0) / 1000000))
note "node1 sees node2 up $ms ms after it started, past five addresses that never answer a handshake"
assert_le "$ms" 10000 "ms until node1 sees node2 up (each tarpit costs a 1 s handshake deadline per round)"
kill "$tarpit" 2>/dev/null
wait "$tarpit" 2>/dev/null
note "pass"
