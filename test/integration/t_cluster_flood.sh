#!/usr/bin/env bash
# Inbound connection budgets, in a simulated cluster of three nodes (tools/mows-cluster):
#   a. baseline: node1 restarts cold and reads the model, which node2 and node3 hold;
#      every node holds at most 2 connections from each peer (a heartbeat link and the one
#      link that carries all of a peer's requests), though each runs 16 fill threads;
#   b. node3's namespace holds 256 idle sockets open against node2's peer port (reopening any
#      that node2 closes), sending nothing, while node1 restarts cold and reads the model
#      again. node1 must authenticate with node2 during the flood, read nothing from storage,
#      and take at most 1 s longer than in a; node2 must refuse the flood with few log lines
#      (rate-limited), and stay up for node1.
# timeout: 240
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 2 8
cluster_model_bytes MODEL "$M"
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"

cluster_up --nodes 3 --model "$M" --storage-rate 200mbit \
	--mows-args "--max-memory=64M --chunk-size=1M --fill-threads=16 $CLUSTER_PEER_ARGS"
cluster_wait_mesh 20 1 2 3
cluster_read "$SCRATCH/warm.json" 2,3 || fail "warm-up: a reader failed: $(cat "$SCRATCH/warm.json")"

# Restarts node1 (a new process: new connections, an empty cache) and reads the model on it.
# Sets the variable named $1 to the read's wall time in ms.
restart_and_read() { # VAR TAG
	local out
	out=$(mows_cluster kill node1 2>&1) || fail "$2: mows-cluster kill node1: $out"
	out=$(mows_cluster start node1 2>&1) || fail "$2: mows-cluster start node1: $out"
	cluster_wait_up 20 1 2 3
	cluster_read "$SCRATCH/$2.json" 1 || fail "$2: node1's reader failed: $(cat "$SCRATCH/$2.json")"
	cluster_check_sums "$WANT" 1
	cluster_json "$1" "$SCRATCH/$2.json" node1.ms
	cluster_get from_backing 1 status 'j["bytes_from_backing"]'
	[ "$from_backing" = 0 ] || fail "$2: node1 read $from_backing bytes from storage, expected 0" \
		"(node2 and node3 hold the model); what each node saw:$(_cluster_peers_text 1 2 3)"
}

# ---- a. baseline ----
restart_and_read base_ms a
note "a: node1 restarted and read $MODEL bytes from peers in $base_ms ms"
for n in 2 3; do
	mows_cluster exec "node$n" -- ss -Htn state established "( sport = :7070 )" \
		>"$SCRATCH/ss$n.out" 2>&1 || fail "a: ss on node$n: $(cat "$SCRATCH/ss$n.out")"
	per_peer=$(awk '{ sub(/:[0-9]+$/, "", $4); n[$4]++ } END { m = 0; for (a in n) if (n[a] > m) m = n[a]; print m }' "$SCRATCH/ss$n.out")
	pid=$(cat "$CLUSTER_STATE/node$n.mows.pid")
	note "a: node$n: $(wc -l <"$SCRATCH/ss$n.out") inbound peer connections, at most $per_peer from one peer; $(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l) threads"
	# heartbeat and requests, plus the metadata link to a node's parent in the snapshot tree
	assert_le "$per_peer" 3 "a: inbound peer connections to node$n from one peer (16 fill threads each)"
done

# ---- b. the same under a flood of idle unauthenticated sockets ----
FLOOD='
import socket, sys, time
addr, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host, port = addr.rsplit(":", 1)
socks, opened, end = [], 0, time.time() + secs
while time.time() < end:
    alive = []
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                s.close(); continue
        except BlockingIOError:
            pass
        except OSError:
            s.close(); continue
        alive.append(s)
    socks = alive
    while len(socks) < n:
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect((host, int(port))); socks.append(s); opened += 1
        except OSError:
            s.close(); break
    time.sleep(0.05)
print("flood: held %d sockets at the end, opened %d in all" % (len(socks), opened))
'
log_before=$(wc -l <"$CLUSTER_STATE/node2.log")
mows_cluster exec node3 --timeout 120 -- "$PYTHON" -c "$FLOOD" 198.18.1.2:7070 256 60 \
	>"$SCRATCH/flood.out" 2>&1 &
flood_pid=$!
sleep 2 # the flood is at full strength before node1 starts
restart_and_read flood_ms b
kill "$flood_pid" 2>/dev/null
wait "$flood_pid" 2>/dev/null
log_lines=$(($(wc -l <"$CLUSTER_STATE/node2.log") - log_before))
refusing=$(tail -n +"$((log_before + 1))" "$CLUSTER_STATE/node2.log" | grep -c "refusing a connection" || true)
cluster_get refused 2 peers 'j["refused_unauthenticated"]'
note "b: under a flood of 256 idle sockets node1 read the model in $flood_ms ms (baseline" \
	"$base_ms ms); node2 refused $refused connections and wrote $log_lines log lines" \
	"($refusing about refusals); $(cat "$SCRATCH/flood.out" 2>/dev/null | tail -n 1)"
[ "$refused" -gt 0 ] || fail "b: node2 refused no connection: the flood did not reach it"
assert_le "$flood_ms" $((base_ms + 1000)) "b: node1's read time under the flood, ms (baseline $base_ms + 1000)"
assert_le "$refusing" 10 "b: node2's log lines about refused connections"
pid=$(cat "$CLUSTER_STATE/node2.mows.pid")
pid_alive "$pid" || fail "b: node2's mows-fuse died under the flood"
note "pass"
