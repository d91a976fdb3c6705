#!/usr/bin/env bash
# Liveness gossip (SWIM, net/gossip.h) in a simulated cluster of 8 nodes (tools/mows-cluster),
# heartbeat 200 ms, peer_timeout 2 s:
#   a. node1's route to node8 alone is cut (a blackhole route in node1's namespace): node1
#      suspects node8, node8 hears of it through the others and refutes, and node1 never
#      declares node8 down in 4 peer_timeouts, because the others reach it (without gossip it
#      is down on node1 after one peer_timeout);
#   a2. node8 stalls for 1 s (SIGSTOP, SIGCONT): the others suspect it, it refutes when it
#      runs again, and nobody drops it;
#   b. node7 loses power (a blackhole for everything in its namespace, so no FIN or RST
#      leaves it, then SIGKILL): every survivor drops it, all within 1.5 s of the first, and
#      within 6 s of the kill (peer_timeout 2 s); time to agree is reported;
#   c. mixed versions: nodes 5-8 restart as old nodes (MOWS_TEST_NO_GOSSIP=1: no GOSSIP
#      capability, 8-byte PINGs): every node sees every other up, and a suspicion still
#      works between the new ones;
#   d. before: every node old, node7 loses power again; the same times are reported (the
#      figures in the README come from this test).
# Messages per node per round ((PINGs + PONGs) / rounds) are reported for a and d.
# timeout: 420
# shellcheck disable=SC2154 # variables set by cluster_get (printf -v)
CLUSTER=${CLUSTER:-swim$$}
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

N=${GOSSIP_NODES:-8}
ALL=$(seq 1 "$N")
M=$SCRATCH/model
cluster_model "$M" 1 4
cluster_up --nodes "$N" --model "$M" --mows-args "--max-memory=32M --chunk-size=1M \
--heartbeat=200ms --peer-timeout=2s --request-timeout=3s"
# shellcheck disable=SC2086
cluster_wait_mesh 60 $ALL

in_node() { # NODE CMD...: as root in that node's namespaces
	local n=$1
	shift
	mows_cluster exec "node$n" --timeout 20 -- "$@"
}

# Seconds of the day (machine clock, as the logs write it) of the first line after line
# $3 of node $1's log that matches $2, or nothing.
log_secs() { # NODE PATTERN FROM_LINE
	tail -n +"$(($3 + 1))" "$CLUSTER_STATE/node$1.log" | grep -m1 -- "$2" |
		awk '{ split($1, t, ":"); printf "%.3f\n", t[1] * 3600 + t[2] * 60 + t[3] }'
}
log_lines() { wc -l <"$CLUSTER_STATE/node$1.log"; }
now_secs() { date +%H:%M:%S.%N | awk '{ split($1, t, ":"); printf "%.3f\n", t[1] * 3600 + t[2] * 60 + t[3] }'; }

# Messages per node per round over nodes $@: (PINGs sent + PONGs sent) / heartbeat rounds.
msgs_per_round() {
	local n r p q tr=0 tm=0
	for n; do
		cluster_get r "$n" peers 'j["liveness"]["rounds"]'
		cluster_get p "$n" peers 'j["liveness"]["pings"]'
		cluster_get q "$n" peers 'j["liveness"]["pongs"]'
		tr=$((tr + r))
		tm=$((tm + p + q))
	done
	awk -v m="$tm" -v r="$tr" 'BEGIN { printf "%.2f", r ? m / r : 0 }'
}

# Power loss of node $1: nothing leaves its namespace any more, then SIGKILL. Sets
# KILLED_AT (seconds of the day) and FROM[n] (each survivor's log length before).
declare -A FROM
power_off() {
	local v=$1 n
	for n in $ALL; do FROM[$n]=$(log_lines "$n"); done
	in_node "$v" ip route add blackhole 198.18.0.0/16 ||
		fail "cannot add a blackhole route in node$v's namespace"
	in_node "$v" ip route add blackhole 198.19.0.0/16 ||
		fail "cannot add a blackhole route in node$v's namespace"
	KILLED_AT=$(now_secs)
	out=$(mows_cluster kill "node$v" --signal KILL 2>&1) || fail "mows-cluster kill node$v: $out"
}

# Waits until every survivor logged node $1 down; sets FIRST, LAST (seconds after the kill).
wait_dropped() { # VICTIM SECS WHAT
	local v=$1 end=$((SECONDS + $2)) n t ok
	while :; do
		ok=1 FIRST= LAST=
		for n in $ALL; do
			[ "$n" = "$v" ] && continue
			t=$(log_secs "$n" "peer node$v (.*) is down" "${FROM[$n]}")
			[ -n "$t" ] || { ok=0; break; }
			t=$(awk -v a="$KILLED_AT" -v b="$t" 'BEGIN { printf "%.3f", b - a }')
			{ [ -z "$FIRST" ] || awk -v a="$t" -v b="$FIRST" 'BEGIN { exit !(a < b) }'; } &&
				FIRST=$t
			{ [ -z "$LAST" ] || awk -v a="$t" -v b="$LAST" 'BEGIN { exit !(a > b) }'; } &&
				LAST=$t
		done
		[ $ok -eq 1 ] && return 0
		[ $SECONDS -ge $end ] &&
			fail "$3: node$n has not dropped node$v $2 s after it lost power:$(_cluster_peers_text "$n")"
		sleep 0.2
	done
}

restore() { # NODE: its routes back, its daemon started again (with env $2...)
	local v=$1
	shift
	in_node "$v" ip route del blackhole 198.18.0.0/16 2>/dev/null
	in_node "$v" ip route del blackhole 198.19.0.0/16 2>/dev/null
	out=$(mows_cluster start "node$v" "$@" 2>&1) || fail "mows-cluster start node$v $*: $out"
}

# ---- a. a link cut between two nodes alone ----
for n in 1 8; do FROM[$n]=$(log_lines "$n"); done
cluster_get sus0 1 peers 'j["liveness"]["suspected"]'
cluster_get ind0 1 peers 'j["liveness"]["indirect_alive"]'
cluster_get ref0 8 peers 'j["liveness"]["refutations"]'
in_node 1 ip route add blackhole 198.18.1.8/32 ||
	fail "a: cannot add a blackhole route to node8 in node1's namespace"
sleep 8
cluster_get sus 1 peers 'j["liveness"]["suspected"]'
cluster_get ind 1 peers 'j["liveness"]["indirect_alive"]'
cluster_get ref 8 peers 'j["liveness"]["refutations"]'
cluster_get st 1 peers 'peer("node8")["state"]'
in_node 1 ip route del blackhole 198.18.1.8/32 || fail "a: cannot remove the blackhole route"
line=$(tail -n +"$((FROM[1] + 1))" "$CLUSTER_STATE/node1.log" | grep -m1 "peer node8 (.*) is down") &&
	fail "a: node1 declared node8 down although nodes 2-7 reach it: $line"
assert_eq up "$st" "a: node8's state on node1 after 8 s cut off from it (peer_timeout 2 s)"
[ "$((sus - sus0 + ind - ind0))" -gt 0 ] ||
	fail "a: node1's heartbeats to node8 never failed while its route to it was cut (the cut did not work?)"
[ "$sus" -eq "$sus0" ] || [ "$ref" -gt "$ref0" ] ||
	fail "a: node1 suspected node8 and node8 never refuted it"
for n in 2 3 4 5 6 7; do
	cluster_peers_up "$n" 8 || fail "a: node$n does not see node8 up:$(_cluster_peers_text "$n")"
done
mpr=$(msgs_per_round $ALL)
note "a: node1 cut off from node8 for 8 s: $((ind - ind0)) failed heartbeats answered by others (PING_REQ), suspected it $((sus - sus0)) times, node8 refuted $((ref - ref0)) times, never down; $mpr messages per node per round (gossip)"

# ---- a2. a stall shorter than peer_timeout: suspected, refuted, never dropped ----
for n in $ALL; do FROM[$n]=$(log_lines "$n"); done
# (kill(1) itself: mows-cluster waits on a stopped daemon's control socket.)
pid8=$(cat "$CLUSTER_STATE/node8.mows.pid") || fail "a2: no pid file for node8's daemon"
kill -STOP "$pid8" || fail "a2: cannot stop node8's mows-fuse (pid $pid8)"
sleep 1
kill -CONT "$pid8" || fail "a2: cannot continue node8's mows-fuse (pid $pid8)"
sleep 3
for n in $ALL; do
	line=$(tail -n +"$((FROM[$n] + 1))" "$CLUSTER_STATE/node$n.log" | grep -m1 "peer node8 (.*) is down") &&
		fail "a2: node$n dropped node8 for a 1 s stall (peer_timeout 2 s): $line"
done
cluster_get ref2 8 peers 'j["liveness"]["refutations"]'
[ "$ref2" -gt "$ref" ] || fail "a2: node8 stalled for 1 s and refuted no suspicion (nobody suspected it?)"
note "a2: node8 stalled 1 s (SIGSTOP): suspected, refuted $((ref2 - ref)) times, dropped by nobody"

# ---- b. power loss, with gossip ----
cluster_wait_mesh 20 $ALL
power_off 7
wait_dropped 7 15 b
after="first $FIRST s, last $LAST s after the kill"
spread=$(awk -v a="$FIRST" -v b="$LAST" 'BEGIN { printf "%.3f", b - a }')
heard=0
for n in $ALL; do
	[ "$n" = 7 ] && continue
	tail -n +"$((FROM[$n] + 1))" "$CLUSTER_STATE/node$n.log" |
		grep -m1 "peer node7 (.*) is down" | grep -q "heard from" && heard=$((heard + 1))
done
note "b: with gossip, every survivor dropped node7: $after (spread $spread s); $heard of $((N - 1)) learned it from a peer"
[ "$heard" -ge 1 ] || fail "b: every survivor found node7 dead by itself; none heard it from a peer"
awk -v s="$spread" 'BEGIN { exit !(s <= 1.5) }' ||
	fail "b: survivors dropped node7 $spread s apart (gossip should make it <= 1.5 s)"
awk -v l="$LAST" 'BEGIN { exit !(l <= 6) }' ||
	fail "b: the last survivor dropped node7 $LAST s after it lost power (bound 6 s)"
restore 7

# Restarts each NODE number as a node without gossip (an old one), failing as PART.
restart_old() { # PART NODE...
	local part=$1 n out
	shift
	for n; do
		out=$(mows_cluster kill "node$n" 2>&1) || fail "$part: mows-cluster kill node$n: $out"
		out=$(mows_cluster start "node$n" --env MOWS_TEST_NO_GOSSIP=1 2>&1) ||
			fail "$part: mows-cluster start node$n --env MOWS_TEST_NO_GOSSIP=1: $out"
	done
}

# ---- c. mixed versions ----
restart_old c 5 6 7 8
cluster_wait_mesh 30 $ALL
cluster_get g5 5 peers 'j["liveness"]["gossip"]'
assert_eq false "$g5" "c: node5 runs as an old node"
for n in 1 5; do
	grep -q "protocol\|EPROTO\|Protocol error" "$CLUSTER_STATE/node$n.log" &&
		fail "c: node$n logged a protocol error between old and new nodes: $(grep -m1 "protocol\|EPROTO\|Protocol error" "$CLUSTER_STATE/node$n.log")"
done
note "c: nodes 1-4 gossip, 5-8 do not: all $N see each other up"

# ---- d. power loss, every node old (before) ----
restart_old d 1 2 3 4
cluster_wait_mesh 30 $ALL
sleep 2
mpr_old=$(msgs_per_round $ALL)
power_off 7
wait_dropped 7 30 d
spread_old=$(awk -v a="$FIRST" -v b="$LAST" 'BEGIN { printf "%.3f", b - a }')
note "d: without gossip (before), every survivor dropped node7: first $FIRST s, last $LAST s after the kill (spread $spread_old s); $mpr_old messages per node per round"
note "summary: $N nodes, node7 loses power: with gossip $after (spread $spread s); without: first $FIRST s, last $LAST s (spread $spread_old s)"
note "pass"
