#!/usr/bin/env bash
# A peer that sends bad chunks, as an operator sees it: node c corrupts every chunk it sends
# (MOWS_TEST_CORRUPT_SENDS=1); node d reads a file whose chunks c partly owns, gets every
# byte right (from storage) and quarantines c. Then d's /metrics counts the quarantine
# (mows_peer_quarantines_total, equal to `mowsctl peers --json` "quarantines", with
# mows_peers_quarantined 1), and d's journal entries about c carry MOWS_PEER=<c's node id>:
# the bad CRC and quarantine warnings (PRIORITY=4) and "is up" (PRIORITY=6). d runs as
# systemd would run it with its stderr the journal stream; the test listens on the journal
# socket in a private mount namespace (a tmpfs over /run/systemd), as t_notify does.
# timeout: 90
if [ -z "${MOWS_QUAR_NS:-}" ]; then
	exec env MOWS_QUAR_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || fail "needs curl (make deps installs it)"

mount -t tmpfs -o mode=0755,size=1M mows-quar-test /run/systemd ||
	fail "cannot mount a tmpfs on /run/systemd in this test's mount namespace"
mkdir -p /run/systemd/journal
EV=$SCRATCH/journal.jsonl
LISTENER_PID=
_quar_cleanup() {
	local rc=$?
	if [ -n "$LISTENER_PID" ]; then
		kill -TERM "$LISTENER_PID" 2>/dev/null
		wait_pid_gone "$LISTENER_PID" 5 || kill -KILL "$LISTENER_PID" 2>/dev/null
	fi
	(exit "$rc")
	_mows_cleanup
}
trap _quar_cleanup EXIT

cat >"$SCRATCH/journal.py" <<'PY'
import json, os, socket, sys
sys.path.insert(0, os.environ["MOWS_IT"])
from helpers import journal_fields as fields
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], "a")
print(json.dumps({"listening": True}), file=out, flush=True)
while True:
    print(json.dumps(fields(s.recv(1 << 16))), file=out, flush=True)
PY
MOWS_IT="$MOWS_IT" "$PYTHON" "$SCRATCH/journal.py" /run/systemd/journal/socket "$EV" 2>"$SCRATCH/journal.err" &
LISTENER_PID=$!
retry_until 10 test -s "$EV" || fail "journal listener did not start: $(cat "$SCRATCH/journal.err")"
# count EXPR: journal entries (f) for which the Python expression EXPR holds.
count() {
	"$PYTHON" -c '
import json, sys
print(sum(bool(eval(sys.argv[2])) for f in map(json.loads, open(sys.argv[1])) if "listening" not in f))' "$EV" "$1"
}

B=$SCRATCH/backing
rand_file "$B/model.bin" $((24 * MiB + 5))
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pc=$(free_port) pd=$(free_port) md=$(free_port)
C=c$$ D=d$$
common=(--chunk-size=1M --max-memory=64M --insecure=true --tls=off --transport=tcp
	--heartbeat=200ms --verify=off)
export MOWS_TEST_CORRUPT_SENDS=1
mows_mount "$B" "$SCRATCH/c" "${common[@]}" --node-id="$C" --listen="127.0.0.1:$pc" \
	--peers="127.0.0.1:$pd"
unset MOWS_TEST_CORRUPT_SENDS
# d is the second mount: its stderr is daemon2.log (lib.sh), which stands for the journal stream.
touch "$SCRATCH/daemon2.log"
JOURNAL_STREAM=$(stat -c %d:%i "$SCRATCH/daemon2.log")
export JOURNAL_STREAM
mows_mount "$B" "$SCRATCH/d" "${common[@]}" --node-id="$D" --listen="127.0.0.1:$pd" \
	--peers="127.0.0.1:$pc" --metrics-listen="127.0.0.1:$md"
unset JOURNAL_STREAM
SD=$MOWS_SOCK

metric() {
	curl -fsS "http://127.0.0.1:$md/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v == "" ? "none" : v }'
}
up() { [ "$(metric 'mows_peers{state="up"}')" = 1 ]; }
retry_until 20 up || fail "d does not see c up within 20 s"
assert_eq 0 "$(metric mows_peer_quarantines_total)" "d: mows_peer_quarantines_total before any bad chunk"

# Every byte right although c corrupts what it sends (once c serves: a lookup on its mount
# waits for its metadata, and until then it has no file to send).
timeout 20 stat "$SCRATCH/c/model.bin" >/dev/null || fail "c: model.bin not served within 20 s"
assert_cmp "$B/model.bin" "$SCRATCH/d/model.bin"
quarantined() { [ "$(metric mows_peer_quarantines_total)" -ge 1 ] 2>/dev/null; }
retry_until 10 quarantined ||
	fail "d: mows_peer_quarantines_total is '$(metric mows_peer_quarantines_total)' after reading chunks from a corrupting peer"
q=$(metric mows_peer_quarantines_total)
"$MOWS_CTL" -s "$SD" peers --json >"$SCRATCH/peers.json" 2>&1 || fail "mowsctl peers --json: $(cat "$SCRATCH/peers.json")"
jq_q=$("$PYTHON" -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().lstrip(". "))["quarantines"])' "$SCRATCH/peers.json") ||
	fail "no quarantines in mowsctl peers --json: $(cat "$SCRATCH/peers.json")"
assert_eq "$jq_q" "$q" "d: mows_peer_quarantines_total against mowsctl peers --json quarantines"
assert_eq 1 "$(metric mows_peers_quarantined)" "d: mows_peers_quarantined"
out=$(curl -fsS "http://127.0.0.1:$md/metrics" | grep -A0 '^# TYPE mows_peer_quarantines_total')
assert_eq "# TYPE mows_peer_quarantines_total counter" "$out" "d: the quarantine metric's type"
note "d quarantined c $q time(s); /metrics and mowsctl peers agree"

# The journal: warnings about c name it in MOWS_PEER=.
bad=$(count 'f.get("MOWS_PEER") == "'"$C"'" and f.get("PRIORITY") == "4" and "crc32" in f.get("MESSAGE", "")')
[ "$bad" -ge 1 ] || fail "no journal entry about a bad CRC with MOWS_PEER=$C and PRIORITY=4"
quar=$(count 'f.get("MOWS_PEER") == "'"$C"'" and "quarantining" in f.get("MESSAGE", "")')
[ "$quar" -ge 1 ] || fail "no journal entry 'quarantining' with MOWS_PEER=$C"
upn=$(count 'f.get("MOWS_PEER") == "'"$C"'" and f.get("PRIORITY") == "6" and "is up" in f.get("MESSAGE", "")')
[ "$upn" -ge 1 ] || fail "no journal entry 'is up' with MOWS_PEER=$C and PRIORITY=6"
other=$(count '"MOWS_PEER" in f and f["MOWS_PEER"] != "'"$C"'"')
assert_eq 0 "$other" "journal entries with MOWS_PEER= naming another node than c"
note "journal: $bad bad-CRC, $quar quarantine and $upn up entries carry MOWS_PEER=$C"

mows_umount "$SCRATCH/d"
mows_umount "$SCRATCH/c"
note "pass"
