#!/usr/bin/env bash
# The peer half of /metrics: two daemons on loopback share chunks; each one's /metrics agrees
# with its `mowsctl peers --json` and `status --json` (peers up, bytes in and out by
# transport, bytes filled from and read from the peer), and the names follow the conventions
# (promtool check metrics finds nothing to say).
# timeout: 90
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || fail "needs curl (make deps installs it)"
command -v promtool >/dev/null || fail "needs promtool (make deps installs prometheus)"

B=$SCRATCH/backing
rand_file "$B/model.bin" $((24 * MiB + 5))
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pa=$(free_port) pb=$(free_port) ma=$(free_port) mb=$(free_port)
# No readahead of our own: every chunk b reads is one its reader waits for, so the bytes it
# reads count by the source that filled them (with readahead they may count as cache hits).
common=(--chunk-size=1M --max-memory=64M --insecure=true --tls=off --transport=tcp --heartbeat=200ms --readahead-chunks=0)
mows_mount "$B" "$SCRATCH/a" "${common[@]}" --node-id="a$$" --listen="127.0.0.1:$pa" \
	--peers="127.0.0.1:$pb" --metrics-listen="127.0.0.1:$ma"
SA=$MOWS_SOCK
mows_mount "$B" "$SCRATCH/b" "${common[@]}" --node-id="b$$" --listen="127.0.0.1:$pb" \
	--peers="127.0.0.1:$pa" --metrics-listen="127.0.0.1:$mb"
SB=$MOWS_SOCK

# metric PORT NAME{LABELS}: the sample's value from /metrics, or "none".
metric() {
	curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { v = $2 } END { print v == "" ? "none" : v }'
}
peers_json() { "$MOWS_CTL" -s "$1" peers --json >"$2" 2>&1 || fail "mowsctl -s $1 peers --json: $(cat "$2")"; }
# pj VAR FILE EXPR: EXPR over the peers JSON (j), e.g. sum(p["bytes_in"] for p in j["peers"]).
pj() {
	local _v
	_v=$("$PYTHON" -c 'import json, sys; j = json.loads(open(sys.argv[1]).read().lstrip(". ")); print(eval(sys.argv[2]))' "$2" "$3" 2>&1) ||
		fail "peers JSON $2: $_v"
	printf -v "$1" '%s' "$_v"
}
both_up() {
	[ "$(metric "$ma" 'mows_peers{state="up"}')" = 1 ] && [ "$(metric "$mb" 'mows_peers{state="up"}')" = 1 ]
}
retry_until 20 both_up || fail "the two daemons do not see each other up within 20 s (a: $(metric "$ma" 'mows_peers{state="up"}'), b: $(metric "$mb" 'mows_peers{state="up"}'))"
# a answers peers once it serves (its metadata is in): a lookup on its mount waits for that.
timeout 20 stat "$SCRATCH/a/model.bin" >/dev/null || fail "a: model.bin not served within 20 s"
assert_cmp "$B/model.bin" "$SCRATCH/b/model.bin"
sleep 0.5 # let readahead fills settle

peers_json "$SA" "$SCRATCH/pa.json"
peers_json "$SB" "$SCRATCH/pb.json"
MOWS_SOCK=$SB mows_status_json "$SCRATCH/sb.json"
pj in_b "$SCRATCH/pb.json" 'sum(p["bytes_in"] for p in j["peers"])'
pj out_a "$SCRATCH/pa.json" 'sum(p["bytes_out"] for p in j["peers"])'
jget filled_b "$SCRATCH/sb.json" 'j["sources"].get("peers", 0)'
[ "$in_b" -gt 0 ] || fail "b took no bytes from a (peers --json bytes_in $in_b): no sharing to measure"
assert_eq "$in_b" "$(metric "$mb" 'mows_peer_bytes_total{direction="in",transport="tcp"}')" "b: peer bytes in over tcp"
assert_eq "$out_a" "$(metric "$ma" 'mows_peer_bytes_total{direction="out",transport="tcp"}')" "a: peer bytes out over tcp"
assert_eq "$filled_b" "$(metric "$mb" 'mows_fill_bytes_total{source="peer"}')" "b: bytes filled from the peer"
v=$(metric "$mb" 'mows_read_bytes_total{source="peer"}')
[ "$v" != none ] && [ "$v" -gt 0 ] || fail "b: mows_read_bytes_total{source=\"peer\"} is '$v' after reading chunks a owns"
assert_eq 0 "$(metric "$mb" 'mows_peers{state="down"}')" "b: peers down"
assert_eq 0 "$(metric "$mb" 'mows_crc_mismatches_total{source="peer"}')" "b: bad chunks from the peer"
pj quar_b "$SCRATCH/pb.json" 'j["quarantines"]'
assert_eq "$quar_b" "$(metric "$mb" mows_peer_quarantines_total)" "b: quarantines (t_peer_quarantine makes some)"
for ev in redirects_sent redirected from_holder fallbacks served_as_holder relayed relays_stopped \
	holder_parked holder_misses owner_relayed; do
	pj v "$SCRATCH/pb.json" "j['swarm']['$ev']"
	assert_eq "$v" "$(metric "$mb" "mows_swarm_events_total{event=\"$ev\"}")" "b: swarm event $ev"
done
note "b took $in_b bytes from a ($filled_b filled from the peer), a sent $out_a"

for p in "$ma" "$mb"; do
	out=$(curl -fsS "http://127.0.0.1:$p/metrics" | promtool check metrics 2>&1) ||
		fail "promtool check metrics on 127.0.0.1:$p: $out"
done

mows_umount "$SCRATCH/b"
mows_umount "$SCRATCH/a"
