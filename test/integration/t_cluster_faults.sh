#!/usr/bin/env bash
# Peers facing bad clients and a bad peer, in a simulated cluster of four nodes
# (tools/mows-cluster):
#   e. a client speaking the plaintext wire protocol (test/integration/peerproto.py, from
#      node1) with the cluster's secret gets nothing from a TLS node (TLS refusals in detail:
#      t_cluster_tls);
#   f. megabytes of random bytes over many connections to node2's peer port leave it serving:
#      it stays up for the others and serves its share of a cold load afterwards;
#   d. a peer that corrupts every chunk it sends (MOWS_TEST_CORRUPT_SENDS=1 on node4): a node
#      reading through it gets only right bytes, counts bad CRCs against node4 (and only
#      against node4), quarantines it and logs it.
# timeout: 180
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need
need_cmd fincore
PP=$MOWS_IT/peerproto.py
"$PYTHON" "$PP" selftest >/dev/null || fail "peerproto.py selftest failed"

M=$SCRATCH/model
cluster_model "$M" 3 16
mows_make_manifest "$M"
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"
cluster_model_bytes MODEL "$M"
SECRET=$CLUSTER_STATE/secret

cluster_up --nodes 4 --model "$M" \
	--mows-args "--max-memory=96M --chunk-size=1M $CLUSTER_PEER_ARGS --log-level=debug"
cluster_wait_mesh 20 1 2 3 4

# peerproto.py runs in node1's namespaces, against node2, and stats the file in node1's
# backing mount (the file's identity is its size and mtime as the nodes see them).
REL=$(cd "$M" && find . -type f -size +8M -printf '%P\n' | sort | head -n 1)
[ -n "$REL" ] || fail "the generated model has no file over 8 MiB"
CHUNK=3
WANT_CRC=$("$PYTHON" -c '
import sys, zlib
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]) << 20)
print("%08x" % zlib.crc32(f.read(1 << 20)))' "$M/$REL" "$CHUNK") || fail "cannot compute the CRC of $REL"
pp() { # MODE [ARGS...]: peerproto.py MODE from node1 to node2; output in $SCRATCH/pp-MODE.out
	local mode=$1
	shift
	mows_cluster exec node1 --timeout 60 -- "$PYTHON" "$PP" "$mode" --addr 198.18.1.2:7070 "$@" \
		>"$SCRATCH/pp-$mode.out" 2>&1
}
GETARGS=(--root /mnt/mows-backing --rel "$REL" --chunk "$CHUNK" --chunk-size "$MiB")

# ---- e. authentication ----
# Peers speak TLS 1.3 (t_cluster_tls: wrong PSK, certificates, a standard TLS client). The old
# plaintext protocol is refused before anything is said, even with the right secret.
if pp get --secret-file "$SECRET" "${GETARGS[@]}" --expect-crc "$WANT_CRC"; then
	fail "e: a plaintext client got chunk $CHUNK from a TLS node: $(cat "$SCRATCH/pp-get.out")"
fi
grep -q "AUTH_OK\|DATA" "$SCRATCH/pp-get.out" &&
	fail "e: the plaintext client got AUTH_OK or DATA: $(cat "$SCRATCH/pp-get.out")"
grep -q "failed authentication; it got nothing (TLS handshake: the peer does not speak TLS" \
	"$CLUSTER_STATE/node2.log" || fail "e: node2's log does not report the refusal"
note "e: the plaintext protocol, with the right secret, is refused at the TLS handshake"

# ---- f. random bytes to node2's peer port ----
pp garbage --conns 8 --mib 4 --seconds 20 ||
	fail "f: peerproto.py garbage: $(cat "$SCRATCH/pp-garbage.out")"
note "f: $(sed -n 's/^peerproto: garbage: //p' "$SCRATCH/pp-garbage.out")"
pid=$(cat "$CLUSTER_STATE/node2.mows.pid")
pid_alive "$pid" || fail "f: node2's mows-fuse (pid $pid) died from random bytes on its peer port"
# Past peer_timeout (2 s): a node that stopped answering heartbeats would be down by now.
sleep 2.5
for i in 1 3 4; do
	cluster_peers_up "$i" 2 ||
		fail "f: node$i does not see node2 up after the random bytes:$(_cluster_peers_text "$i")"
done
# A cold load through the others: node2 serves the chunks it owns.
declare -A in0
for i in 1 3 4; do cluster_get "in0[$i]" "$i" peers 'peer("node2")["bytes_in"]'; done
cluster_evict 15 1 2 3 4
cluster_read "$SCRATCH/f.json" 1,3,4 || fail "f: a reader failed: $(cat "$SCRATCH/f.json")"
cluster_check_sums "$WANT" 1,3,4
got=0
for i in 1 3 4; do
	cluster_get v "$i" peers 'peer("node2")["bytes_in"]'
	got=$((got + v - in0[$i]))
done
[ "$got" -gt 0 ] || fail "f: nodes 1, 3 and 4 read the model and got nothing from node2"
note "f: node2 still up everywhere; it sent $got bytes to nodes 1, 3, 4 reading the model"

# ---- d. a peer that corrupts what it sends ----
out=$(mows_cluster kill node4 2>&1) || fail "d: mows-cluster kill node4: $out"
out=$(mows_cluster start node4 --env MOWS_TEST_CORRUPT_SENDS=1 2>&1) ||
	fail "d: mows-cluster start node4 --env MOWS_TEST_CORRUPT_SENDS=1: $out"
grep -q "MOWS_TEST_CORRUPT_SENDS=1: this node corrupts" "$CLUSTER_STATE/node4.log" ||
	fail "d: node4 did not start with the corruption fault (MOWS_TEST_CORRUPT_SENDS=1 not seen)"
cluster_wait_mesh 20 1 2 3 4
cluster_evict 15 1 2 3 4
cluster_read "$SCRATCH/d.json" 1 || fail "d: node1's reader failed: $(cat "$SCRATCH/d.json")"
cluster_check_sums "$WANT" 1
cluster_get bad 1 peers 'peer("node4")["bad_crc"]'
[ "$bad" -gt 0 ] || fail "d: node1 read the model and counted no bad CRC from node4," \
	"which corrupts every chunk it sends:$(_cluster_peers_text 1)"
for n in node2 node3; do
	cluster_get v 1 peers "peer(\"$n\")[\"bad_crc\"]"
	assert_eq 0 "$v" "d: bad CRCs node1 charged to $n, which sends good chunks"
done
end=$((SECONDS + 10))
until cluster_get st 1 peers 'peer("node4")["state"]' && [ "$st" = quarantined ]; do
	[ $SECONDS -ge $end ] &&
		fail "d: node1 sees node4 as '$st' after $bad bad CRCs, not quarantined"
	sleep 0.2
done
line=$(grep -m1 "peer node4 .* sent a chunk with crc32" "$CLUSTER_STATE/node1.log") ||
	fail "d: node1's log has no 'sent a chunk with crc32' line about node4"
note "d: node1 read every byte right, charged node4 $bad bad CRCs and quarantined it; log: ${line#* warn: }"
note "pass"
