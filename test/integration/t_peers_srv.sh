#!/usr/bin/env bash
# Peers from DNS SRV records. In a network and mount namespace of its own (so that a DNS
# server can sit on port 53 and /etc/resolv.conf can point at it), with 198.18.77.1 on lo:
# test/integration/srvdns.py publishes _mows._tcp.srvtest.mows with two targets, node-a:7071
# and node-b:7072. Node a is given only that SRV name (an entry without a port); node b only
# a's HOST:PORT. Then:
#   a. a finds b through the SRV record (b is a configured member, up), and its own target
#      (itself) is skipped;
#   b. a file read through b comes out right (the two share chunks);
#   c. a name without SRV records is logged as such and start-up still works.
# timeout: 120
if [ -z "${MOWS_SRV_NS:-}" ]; then
	command -v unshare >/dev/null || { echo "FAIL: t_peers_srv: needs unshare" >&2; exit 1; }
	MOWS_SRV_NS=1 exec unshare --mount --net -- "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

IP=198.18.77.1
ip link set lo up || fail "cannot bring lo up in the test's network namespace"
ip addr add "$IP/32" dev lo || fail "cannot add $IP to lo"
printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$IP" >"$SCRATCH/resolv.conf"
mount --bind "$SCRATCH/resolv.conf" /etc/resolv.conf || fail "cannot bind-mount a resolv.conf"
printf '127.0.0.1 localhost\n' >"$SCRATCH/hosts"
mount --bind "$SCRATCH/hosts" /etc/hosts || fail "cannot bind-mount a hosts file"

"$PYTHON" "$MOWS_IT/srvdns.py" "$IP" 53 _mows._tcp.srvtest.mows node-a.srvtest.mows:7071 \
	node-b.srvtest.mows:7072 -- node-a.srvtest.mows=$IP node-b.srvtest.mows=$IP \
	>"$SCRATCH/dns.log" 2>&1 &
DNS_PID=$!
mows_track_pid "$DNS_PID"
retry_until 10 grep -q ready "$SCRATCH/dns.log" || fail "the DNS server did not start: $(cat "$SCRATCH/dns.log")"

B=$SCRATCH/backing
rand_file "$B/model.bin" $((8 * MiB + 3))
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SCRATCH/secret"
chmod 600 "$SCRATCH/secret"
common=(--chunk-size=1M --max-memory=64M --secret-file="$SCRATCH/secret" --transport=tcp
	--heartbeat=200ms --resolve-interval=500ms)
mows_mount "$B" "$SCRATCH/a" "${common[@]}" --node-id="srva$$" --listen="$IP:7071" \
	--peers=_mows._tcp.srvtest.mows
SA=$MOWS_SOCK LOGA=$MOWS_LOG
mows_mount "$B" "$SCRATCH/b" "${common[@]}" --node-id="srvb$$" --listen="$IP:7072" \
	--peers="$IP:7071"
SB=$MOWS_SOCK

# b as a sees it: "STATE ORIGIN", or "none".
b_seen_by_a() {
	"$MOWS_CTL" -s "$SA" --json peers 2>/dev/null | "$PYTHON" -c '
import json, sys
j = json.loads(sys.stdin.read().lstrip(". "))
p = [p for p in j["peers"] if p["address"] == sys.argv[1]]
print(p[0]["state"], p[0]["origin"] if p else "none") if p else print("none")' "$IP:7072"
}
b_up_configured() { [ "$(b_seen_by_a)" = "up configured" ] || [ "$(b_seen_by_a)" = "up configured+inbound" ]; }
retry_until 20 b_up_configured ||
	fail "a: member $IP:7072 from the SRV record is '$(b_seen_by_a)' after 20 s, not up and configured; a's log: $(grep -i 'srv\|resolve' "$LOGA" | tail -n 5)"
note "a: $IP:7072 (node-b from _mows._tcp.srvtest.mows) is $(b_seen_by_a)"
n=$("$MOWS_CTL" -s "$SA" --json peers | "$PYTHON" -c 'import json, sys; print(json.loads(sys.stdin.read().lstrip(". "))["members"])')
assert_eq 2 "$n" "a: members (itself and b; its own SRV target is itself)"
grep -q "cannot resolve\|no SRV records" "$LOGA" && fail "a logged a resolution failure: $(grep 'cannot resolve\|no SRV' "$LOGA" | head -n 2)"

# a answers peers only once it serves (its metadata, taken from b, is in): a lookup on a's
# mount waits for that. A read on b before then finds a with no file to serve and reads storage.
timeout 20 stat "$SCRATCH/a/model.bin" >/dev/null || fail "a: model.bin not served within 20 s"
assert_cmp "$B/model.bin" "$SCRATCH/b/model.bin"
out=$("$MOWS_CTL" -s "$SB" --json peers)
in_b=$("$PYTHON" -c 'import json, sys; print(sum(p["bytes_in"] for p in json.loads(sys.argv[1].lstrip(". "))["peers"]))' "$out")
[ "$in_b" -gt 0 ] || fail "b read nothing from a: $out"
note "b read model.bin correctly, $in_b bytes of it from a"

# c. a SRV name with no records: said once in the log, and the node still mounts.
mows_mount "$B" "$SCRATCH/c" "${common[@]}" --node-id="srvc$$" --listen="$IP:7073" \
	--peers=_none._tcp.srvtest.mows
retry_until 10 grep -q "_none._tcp.srvtest.mows.*no SRV records" "$MOWS_LOG" ||
	fail "c: no log line about the SRV name without records: $(tail -n 5 "$MOWS_LOG")"
note "c: $(grep -m1 'no SRV records' "$MOWS_LOG" | sed 's/^.*peers: //')"
