#!/usr/bin/env bash
# Node ids are names too: a node whose id holds a quote and a backslash (allowed: any
# printable ASCII without spaces) must not break `mowsctl peers --json` (parsed by python3
# json, the ids given back exactly) nor `mowsctl peers` (one line per peer). Two nodes in
# their own network namespaces (198.18.202.1 and .2). Fails until the peers report writes
# node ids with ctl_json_str() (common/ctlproto.h); net/peer.c prints them raw today.
# timeout: 60
. "$(dirname "$0")/lib.sh"
need_cmd ip nsenter

NS_A=mowstn$$a
NS_B=mowstn$$b
ID_A='node"a\x'
ID_B='b\"}],{'
_tn_exit() {
	local rc=$?
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	(exit "$rc")
	_mows_cleanup
}
trap _tn_exit EXIT
ip netns add "$NS_A" && ip netns add "$NS_B" || fail "ip netns add failed"
ip link add "tn$$a" netns "$NS_A" type veth peer name "tn$$b" netns "$NS_B" || fail "no veth pair"
ip -n "$NS_A" addr add 198.18.202.1/24 dev "tn$$a"
ip -n "$NS_B" addr add 198.18.202.2/24 dev "tn$$b"
ip -n "$NS_A" link set "tn$$a" up && ip -n "$NS_B" link set "tn$$b" up || fail "veth not up"

B=$SCRATCH/backing
mkdir -p "$B"
rand_file "$B/a.bin" 5000
head -c 32 /dev/urandom >"$SCRATCH/secret"
chmod 600 "$SCRATCH/secret"
real_fuse=$MOWS_FUSE
start() { # NS ID MY_IP PEER_IP MNT
	printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s %s "$@"\n' "$1" "$real_fuse" >"$SCRATCH/fuse-$1"
	chmod +x "$SCRATCH/fuse-$1"
	MOWS_FUSE=$SCRATCH/fuse-$1
	mows_mount "$B" "$5" --secret-file="$SCRATCH/secret" --node-id="$2" --listen="$3:7070" \
		--peers="$4:7070" --heartbeat=200ms --max-memory=16M --chunk-size=1M
	MOWS_FUSE=$real_fuse
}
start "$NS_A" "$ID_A" 198.18.202.1 198.18.202.2 "$SCRATCH/mnt-a"
SOCK_A=$MOWS_SOCK
start "$NS_B" "$ID_B" 198.18.202.2 198.18.202.1 "$SCRATCH/mnt-b"

out=$SCRATCH/peers.json
check='
import json, sys
j = json.load(open(sys.argv[1]))
ids = [p["node_id"] for p in j["peers"]]
assert j["node_id"] == sys.argv[2], "own node_id %r" % j["node_id"]
assert sys.argv[3] in ids, "peer ids %r" % ids
'
end=$((SECONDS + 15))
until "$MOWS_CTL" -s "$SOCK_A" peers --json >"$out" 2>"$SCRATCH/err" &&
	grep -q '"state":"up"' "$out"; do
	[ $SECONDS -ge $end ] && break
	sleep 0.2
done
note "peers --json: $(cat "$out" "$SCRATCH/err")"
assert_ok "mowsctl peers --json parses and gives the node ids exactly" -- \
	"$PYTHON" -c "$check" "$out" "$ID_A" "$ID_B"
o=$("$MOWS_CTL" -s "$SOCK_A" peers 2>&1) || fail "mowsctl peers exited $?: $o"
note "$o"
