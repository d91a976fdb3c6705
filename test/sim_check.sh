#!/bin/sh
# Checks that tools/mows-sim models something: small cases whose answers are known on paper,
# asserted within a few percent, plus the behaviour that tells the two fetch plans apart.
# ./test/sim_check.sh [path/to/mows-sim]; exits 1 on the first wrong answer.
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

# 1 node alone: the model crosses the storage link once (510 MiB at 400 Mbit/s = 10.695 s).
near "1 node cold = model / storage" "$(kv slowest --nodes 1 cold)" 10.6955 0.02
# Other numbers, so a constant cannot pass: 64 MiB at 100 Mbit/s = 5.369 s.
near "1 node, 64 MiB at 100 Mbit/s" "$(kv slowest --nodes 1 --model 64M --storage 100mbit cold)" \
	5.3687 0.02
# 8 nodes at once with unlimited links: storage is the limit, and it is read once.
near "8 nodes cold, infinite NICs = model / storage" \
	"$(kv slowest --nodes 8 --nic inf cold)" 10.6955 0.02
near "8 nodes cold, storage bytes = model" "$(kv storage_x --nodes 8 --nic inf cold)" 1 0.01
near "32 nodes cold, infinite NICs, swarm = model / storage" \
	"$(kv slowest --nodes 32 --nic inf --plan swarm --model 104M --storage 200mbit cold)" 4.3620 0.02
# Joining with unlimited storage: the new node's link is the limit (510 MiB at 2 Gbit/s).
near "1 node joins 4, infinite storage = model / NIC" \
	"$(kv slowest --nodes 4 --storage inf join)" 2.1391 0.02
near "a join reads nothing from storage" "$(kv storage_x --nodes 4 join)" 0 0
# 2 nodes, unlimited storage, enough threads that waits never idle a link: storage and
# peer bytes share each node's downlink, which carries the whole model.
near "2 nodes cold, infinite storage, 128 threads = model / NIC" \
	"$(kv slowest --nodes 2 --storage inf --threads 128 --window 128 cold)" 2.1391 0.02
# A host CPU limit below the storage rate is the limit (510 MiB at 10 MB/s = 53.48 s).
near "1 node, cpu 10 MB/s = model / cpu" "$(kv slowest --nodes 1 --cpu 10MB/s cold)" 53.4774 0.02
# Efficiency scales every link: 0.5 doubles the storage-bound time.
near "1 node, efficiency 0.5 = 2 x model / storage" \
	"$(kv slowest --nodes 1 --efficiency 0.5 cold)" 21.3910 0.02
# The plans differ as designed: six nodes joining a warm two, today's plan reads storage
# (owners among the new nodes); the swarm reads none.
near "6 join 2, today: storage read again (about half)" \
	"$(kv storage_x --nodes 2 --join 6 --model 104M --nic 300mbit join)" 0.45 0.2
near "6 join 2, swarm: no storage" \
	"$(kv storage_x --nodes 2 --join 6 --model 104M --nic 300mbit --plan swarm join)" 0 0
# A bad value is refused, naming the option.
if out=$("$SIM" --nic 2gbits cold 2>&1); then
	echo "FAIL --nic 2gbits was accepted"
	fails=$((fails + 1))
elif echo "$out" | grep -q -- "--nic '2gbits'"; then
	echo "ok   --nic 2gbits refused: $out"
else
	echo "FAIL --nic 2gbits: unclear error: $out"
	fails=$((fails + 1))
fi

[ "$fails" -eq 0 ] && echo "sim_check: all passed" && exit 0
echo "sim_check: $fails failed"
exit 1
