#!/usr/bin/env bash
# Metadata from peers when a node's backing is not the lister's: two nodes in their own
# network namespaces (198.18.203.1 and .2), each over its own directory holding a file of
# the same name and size but other bytes and another mtime. The node that takes the
# lister's snapshot finds, on its first fill, that its file is not the snapshot's version;
# the lister lists again and nothing changes, so that node lists its own backing from then
# on (logged) and, within 15 s, reads exactly its own backing's bytes, while the lister reads
# its own. Fails while a copied snapshot is trusted over the node's own backing (the read
# fails or gives the lister's bytes until metadata_ttl, here 1 h).
# timeout: 90
. "$(dirname "$0")/lib.sh"
need_cmd ip nsenter

NS_A=mowsmd$$a
NS_B=mowsmd$$b
_md_exit() {
	local rc=$?
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	(exit "$rc")
	_mows_cleanup
}
trap _md_exit EXIT
ip netns add "$NS_A" && ip netns add "$NS_B" || fail "ip netns add failed"
ip link add "md$$a" netns "$NS_A" type veth peer name "md$$b" netns "$NS_B" || fail "no veth pair"
ip -n "$NS_A" addr add 198.18.203.1/24 dev "md$$a"
ip -n "$NS_B" addr add 198.18.203.2/24 dev "md$$b"
ip -n "$NS_A" link set "md$$a" up && ip -n "$NS_B" link set "md$$b" up || fail "veth not up"

# Same name, same size, other bytes and mtimes: 8 chunks, so each node owns some.
for n in a b; do
	mkdir -p "$SCRATCH/back-$n"
	rand_file "$SCRATCH/back-$n/w.bin" $((8 * MiB))
done
touch -d '2024-01-01 00:00:00' "$SCRATCH/back-a/w.bin"
touch -d '2024-02-02 00:00:00' "$SCRATCH/back-b/w.bin"
sum_a=$(sha256sum <"$SCRATCH/back-a/w.bin" | awk '{ print $1 }')
sum_b=$(sha256sum <"$SCRATCH/back-b/w.bin" | awk '{ print $1 }')
[ "$sum_a" != "$sum_b" ] || fail "the two backings' files are the same bytes"
head -c 32 /dev/urandom >"$SCRATCH/secret"
chmod 600 "$SCRATCH/secret"
real_fuse=$MOWS_FUSE
start() { # NS N MY_IP PEER_IP
	printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s %s "$@"\n' "$1" "$real_fuse" >"$SCRATCH/fuse-$1"
	chmod +x "$SCRATCH/fuse-$1"
	MOWS_FUSE=$SCRATCH/fuse-$1
	mows_mount "$SCRATCH/back-$2" "$SCRATCH/mnt-$2" --secret-file="$SCRATCH/secret" \
		--node-id="node-$2" --listen="$3:7070" --peers="$4:7070" --heartbeat=100ms \
		--request-timeout=2s --max-memory=32M --chunk-size=1M --metadata-ttl=1h \
		--attr-timeout=0
	MOWS_FUSE=$real_fuse
}
start "$NS_A" a 198.18.203.1 198.18.203.2
LOG_A=$MOWS_LOG
start "$NS_B" b 198.18.203.2 198.18.203.1
LOG_B=$MOWS_LOG

# Which one copied the other's snapshot.
end=$((SECONDS + 15))
until [ -n "${copier:-}" ]; do
	grep -q 'lists the backing for the cluster' "$LOG_A" && copier=a lister=b
	grep -q 'lists the backing for the cluster' "$LOG_B" && copier=b lister=a
	[ $SECONDS -ge $end ] && fail "neither node took the other's snapshot within 15 s"
	sleep 0.1
done
log_c=$LOG_A
[ $copier = b ] && log_c=$LOG_B
want_c=$sum_a want_l=$sum_b
[ $copier = b ] && want_c=$sum_b want_l=$sum_a
note "node-$copier copies node-$lister's snapshot"

# The copier reads until it gets its own backing's bytes (the first reads may fail: the
# snapshot names a version its backing does not hold).
t0=$SECONDS
end=$((SECONDS + 15))
until got=$(timeout 10 sha256sum <"$SCRATCH/mnt-$copier/w.bin" 2>/dev/null | awk '{ print $1 }') &&
	[ "$got" = "$want_c" ]; do
	[ $SECONDS -ge $end ] && fail "node-$copier does not read its own backing's w.bin within 15 s (it reads ${got:-an error}; own $want_c, node-$lister's $want_l)"
	sleep 0.3
done
grep -q 'lists its own backing from now on' "$log_c" ||
	fail "node-$copier reads its own bytes but did not log that it lists its own backing"
note "node-$copier reads its own backing's bytes after $((SECONDS - t0)) s"
got=$(timeout 10 sha256sum <"$SCRATCH/mnt-$lister/w.bin" | awk '{ print $1 }')
assert_eq "$want_l" "$got" "sha256 of w.bin as node-$lister (the lister) reads it"
note "PASS"
