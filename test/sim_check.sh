#!/bin/sh
# Checks that tools/mows-sim models something: small cases whose answers are known on paper,
# asserted within a few percent, plus the behaviour of the real plan, swarm and gossip code it
# links (net/plan.c, net/swarm.c, net/gossip.c) that a stub or a wrong plan would not show.
# ./test/sim_check.sh [path/to/mows-sim]; exits 1 when any answer is wrong.
set -eu
cd "$(dirname "$0")/.."
SIM=${1:-./mows-sim}
[ -x "$SIM" ] || { echo "sim_check: $SIM not found: run 'make mows-sim' first" >&2; exit 1; }
fails=0

# kv KEY ARGS...: one value from a run.
kv() {
	key=$1
	shift
	"$SIM" --kv "$@" | sed -n "s/^$key=//p"
}

# near NAME GOT WANT TOLERANCE(fraction)
near() {
	if awk -v g="$2" -v w="$3" -v t="$4" 'BEGIN { d = g - w; if (d < 0) d = -d;
		exit !(d <= t * (w < 0 ? -w : w) + 1e-9) }'; then
		echo "ok   $1: $2 (want $3 +- $(awk -v t="$4" 'BEGIN { print t * 100 }')%)"
	else
		echo "FAIL $1: $2, want $3 +- $(awk -v t="$4" 'BEGIN { print t * 100 }')%"
		fails=$((fails + 1))
	fi
}

# below NAME GOT LIMIT: GOT < LIMIT.
below() {
	if awk -v g="$2" -v l="$3" 'BEGIN { exit !(g < l) }'; then
		echo "ok   $1: $2 (< $3)"
	else
		echo "FAIL $1: $2, want below $3"
		fails=$((fails + 1))
	fi
}

# 1 node alone: the model crosses the storage link once (510 MiB at 400 Mbit/s = 10.695 s).
near "1 node cold = model / storage" "$(kv slowest --nodes 1 cold)" 10.6955 0.02
# Other numbers, so a constant cannot pass: 64 MiB at 100 Mbit/s = 5.369 s.
near "1 node, 64 MiB at 100 Mbit/s" "$(kv slowest --nodes 1 --model 64M --storage 100mbit cold)" \
	5.3687 0.02
# 8 nodes at once with unlimited links: storage is the limit, and it is read once.
near "8 nodes cold, infinite NICs = model / storage" \
	"$(kv slowest --nodes 8 --nic inf cold)" 10.6955 0.02
near "8 nodes cold, storage bytes = model" "$(kv storage_x --nodes 8 --nic inf cold)" 1 0.01
# Joining with unlimited storage: the new node's link is the limit (510 MiB at 2 Gbit/s).
near "1 node joins 4, infinite storage = model / NIC" \
	"$(kv slowest --nodes 4 --storage inf join)" 2.1391 0.02
# 2 nodes, unlimited storage, enough threads that waits never idle a link: storage and
# peer bytes share each node's downlink, which carries the whole model.
near "2 nodes cold, infinite storage, 128 threads = model / NIC" \
	"$(kv slowest --nodes 2 --storage inf --threads 128 --window 128 cold)" 2.1391 0.02
# A host CPU limit below the storage rate is the limit (510 MiB at 10 MB/s = 53.48 s).
near "1 node, cpu 10 MB/s = model / cpu" "$(kv slowest --nodes 1 --cpu 10MB/s cold)" 53.4774 0.02
# Efficiency scales every link: 0.5 doubles the storage-bound time.
near "1 node, efficiency 0.5 = 2 x model / storage" \
	"$(kv slowest --nodes 1 --efficiency 0.5 cold)" 21.3910 0.02

# The swarm as built, on paper: 8 nodes want one 4 MiB chunk (4189304 bytes beside 5 small
# files) at once, storage and links 100 Mbit/s, no latency. The owner reads it from storage
# (0.3351 s; a storage read is served only once whole) and serves the first requester; with
# swarm_fanout 1 swarm_admit() hands each later one to the one before: a chain of 7. Relaying
# while it arrives, each hop after the first lags one 256 KiB piece (0.0210 s):
# 2 x 0.3351 + 6 x 0.0210 = 0.796 s. Store and forward: 8 x 0.3351 = 2.68 s.
CHAIN="--nodes 8 --model 4M --shards 1 --storage 100mbit --nic 100mbit --rtt 0 --storage-latency 0"
# shellcheck disable=SC2086
near "a chain of 8, relaying = 2 chunk times + 6 pieces" "$(kv slowest $CHAIN cold)" 0.796 0.02
# shellcheck disable=SC2086
near "a chain of 8, whole chunks = 8 chunk times" "$(kv slowest $CHAIN --relay off cold)" 2.68 0.02
# shellcheck disable=SC2086
near "a chain of 8: the owner redirects 6 of 7 requesters" "$(kv redirects $CHAIN cold)" 36 0
# The same with 128 KiB pieces: the lag per hop halves (2 x 0.3351 + 6 x 0.0105 = 0.733 s).
# shellcheck disable=SC2086
near "a chain of 8, 128 KiB pieces" "$(kv slowest $CHAIN --piece 128K cold)" 0.733 0.02
# No swarm (--fanout 0): the owner sends to all 7 itself, sharing its uplink:
# 0.3351 + 7 x 0.3351 = 2.68 s, and nobody is redirected.
# shellcheck disable=SC2086
near "no swarm: the owner's uplink carries 7 copies" "$(kv slowest $CHAIN --fanout 0 cold)" 2.68 0.02
# shellcheck disable=SC2086
near "no swarm: no redirects" "$(kv redirects $CHAIN --fanout 0 cold)" 0 0

# A cold burst where links, not storage, are the limit (16 nodes, storage 50 / links
# 75 Mbit/s): relaying along fanout-1 chains must beat store and forward clearly.
BURST="--nodes 16 --model 102M --storage 50mbit --nic 75mbit --efficiency 0.956"
# shellcheck disable=SC2086
relay=$(kv slowest $BURST cold)
# shellcheck disable=SC2086
whole=$(kv slowest $BURST --relay off cold)
below "16 cold at 50/75 Mbit/s: relaying < 0.8 x whole chunks ($whole s)" "$relay" \
	"$(awk -v w="$whole" 'BEGIN { print 0.8 * w }')"
# shellcheck disable=SC2086
near "16 cold: storage read once" "$(kv storage_x $BURST cold)" 1 0.01

# A warm join must read nothing from storage: six nodes joining a warm two take the top ranks
# of most chunks, so net/plan.c's owner probes the older (warm) members before storage. A
# plan without the older probes, or a sim that does not pass `older`, reads about half.
JOIN="--nodes 2 --join 6 --model 102M --nic 100mbit --efficiency 0.956"
# shellcheck disable=SC2086
near "6 join 2: no storage" "$(kv storage_x $JOIN join)" 0 0
# shellcheck disable=SC2086
near "1 joins 4: no storage" "$(kv storage_x --nodes 4 join)" 0 0
# ... and it is link-bound within 1.3x (the model's bound for the bench goal).
# shellcheck disable=SC2086
below "6 join 2 at 100 Mbit/s: slowest < 1.3 x model / link (8.56 s)" \
	"$(kv slowest $JOIN join)" 11.13

# Membership (net/gossip.c over heartbeat rounds): a crash is suspected, then held dead
# by every node within peer_timeout plus a few rounds of gossip; the ping budget is
# ceil(log2(n + 1)) + 2; a join reaches all at MEMBERS_PROBES (256) connections a round.
near "members 1000: ping budget = 12" "$(kv ping_budget members --nodes 1000)" 12 0
near "members 1000: join known by all in 4 rounds" "$(kv join_rounds members --nodes 1000)" 4 0
for t in 5 10; do
	d=$(kv dead_rounds --timeout-rounds $t members --nodes 100)
	below "members 100, timeout $t rounds: dead for all within timeout + 3" "$d" $((t + 4))
	below "members 100, timeout $t rounds: not before the timeout" "$t" "$d"
done
m8=$(kv msgs_mean members --nodes 8)
m1000=$(kv msgs_mean members --nodes 1000)
below "members: messages per node per round at 1000 < 2 x at 8 ($m8)" "$m1000" \
	"$(awk -v m="$m8" 'BEGIN { print 2 * m }')"

# A bad value is refused, naming the option.
for bad in "--nic 2gbits" "--fanout 65" "--relay maybe"; do
	# shellcheck disable=SC2086
	if out=$("$SIM" $bad cold 2>&1); then
		echo "FAIL $bad was accepted"
		fails=$((fails + 1))
	elif echo "$out" | grep -q -- "${bad%% *} '${bad#* }'"; then
		echo "ok   $bad refused: $out"
	else
		echo "FAIL $bad: unclear error: $out"
		fails=$((fails + 1))
	fi
done

[ "$fails" -eq 0 ] && echo "sim_check: all passed" && exit 0
echo "sim_check: $fails failed"
exit 1
