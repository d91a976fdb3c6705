#!/usr/bin/env bash
# Membership, in a simulated cluster of three nodes (tools/mows-cluster) where no node is
# given the whole list: every node's `peers` names only node1, node1 and node2 also read a
# peers_file naming node2, and nobody names node3.
#   a. node1 finds node2 through peers_file; node2 and node3 join node1's and node2's member
#      sets by connecting in (authenticated inbound peers); all three agree on the member
#      count (3) and digest (mowsctl peers);
#   b. node3 stops cleanly (SIGTERM): it says LEAVE, and node1 and node2 drop it within 1.5 s,
#      though peer_timeout is 20 s; they agree again on 2 members.
# timeout: 180
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 1 4
# The nodes' mount namespaces see the host's /tmp, where SCRATCH is.
PF=$SCRATCH/peers.txt
printf '# node2 only\n198.18.1.2:7070\n' >"$PF"

cluster_up --nodes 3 --model "$M" --mows-args "--max-memory=32M --chunk-size=1M \
--heartbeat=200ms --peer-timeout=20s --request-timeout=3s --resolve-interval=500ms \
--peers=198.18.1.1:7070 --peers-file=$PF"

# Sets $1 to "COUNT DIGEST" as node $2 reports them.
member_set() {
	local _n _d
	cluster_get _n "$2" peers 'j["members"]'
	cluster_get _d "$2" peers 'j["member_digest"]'
	printf -v "$1" '%s %s' "$_n" "$_d"
}

# Waits until every listed node reports WANT members and all report the same digest.
wait_agree() { # SECS WANT NODE...
	local secs=$1 want=$2 end=$((SECONDS + $1)) s first n ok
	shift 2
	while :; do
		ok=1 first=
		for n; do
			member_set s "$n"
			[ "${s%% *}" = "$want" ] || ok=0
			[ -z "$first" ] && first=$s
			[ "$s" = "$first" ] || ok=0
		done
		[ $ok -eq 1 ] && { agreed=$first; return 0; }
		[ $SECONDS -ge $end ] &&
			fail "nodes $* do not agree on $want members after ${secs}s:$(_cluster_peers_text "$@")"
		sleep 0.1
	done
}

# ---- a. peers_file and inbound peers make one member set ----
t0=$SECONDS
wait_agree 20 3 1 2 3
note "a: nodes 1, 2, 3 agree on the member set (count, digest: $agreed) after $((SECONDS - t0)) s"
cluster_get st 1 peers 'peer("node3")["state"]'
assert_eq up "$st" "a: node3 as node1 sees it (it was named nowhere, it connected in)"
cluster_get st 1 peers 'peer("node2")["state"]'
assert_eq up "$st" "a: node2 as node1 sees it (named in peers_file only)"

# ---- b. a clean stop says LEAVE ----
out=$(mows_cluster kill node3 2>&1) || fail "b: mows-cluster kill node3: $out"
wait_agree 10 2 1 2
cluster_get st 1 peers 'peer("node3")["state"]'
assert_eq left "$st" "b: node3's state on node1"
# From node3's log line on SIGTERM to node1's on LEAVE (one clock: the log's timestamps).
secs_of() { # FILE PATTERN: the time of day of the first line matching, in seconds
	grep -m1 "$2" "$1" | awk '{ split($1, t, ":"); print t[1] * 3600 + t[2] * 60 + t[3] }'
}
t_stop=$(secs_of "$CLUSTER_STATE/node3.log" "stopping on signal")
[ -n "$t_stop" ] || fail "b: node3's log has no 'stopping on signal' line"
for n in 1 2; do
	t_left=$(secs_of "$CLUSTER_STATE/node$n.log" "peer node3 left")
	[ -n "$t_left" ] || fail "b: node$n's log does not say node3 left"
	ms=$(awk -v a="$t_stop" -v b="$t_left" 'BEGIN { printf "%d", (b - a) * 1000 }')
	note "b: node$n dropped node3 $ms ms after node3 began its clean stop; nodes 1 and 2 agree on $agreed"
	assert_le "$ms" 1500 "b: ms until node$n dropped node3 after its clean stop (peer_timeout is 20 s)"
done
note "pass"
