#!/usr/bin/env bash
# Metadata from peers over an object store (issue 10, item 4): four nodes (network and mount
# namespaces, tools/mows-cluster), each running mows-fuse over its own s3fs mount of one
# bucket on a local S3 server (s3rver in the storage host's namespace, 198.18.0.1), all
# started at once.
#   a. the burst lists the store once: the LIST requests the server answered while the four
#      nodes mounted are at most what one listing of the tree costs (one refresh on the
#      lister, measured below); every node shows the same tree (names, sizes, mtimes, modes)
#      and reads the exact bytes;
#   b. a file changed in the store and `mowsctl refresh` on a node that is not the lister:
#      the lister lists again (at most one listing), and every node shows the new version
#      and reads its new bytes within 10 s;
#   c. the lister killed (SIGKILL): while the others still count it live, a refresh on one
#      of them works and the cluster lists once (the next member by rank answers); a node
#      that starts then still mounts within 20 s and shows the new tree.
# On code without metadata_from_peers every node lists the store itself: a. fails (4 listings).
# timeout: 300
# shellcheck disable=SC2154 # variables set by cluster_get (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
. "$MOWS_IT/lib_s3.sh"
cluster_need

N=4
PORT=9000                       # in the storage host's own network namespace
STOR_NS=/run/netns/mows-$CLUSTER-storage
SRC=$SCRATCH/src
mkdir -p "$SRC/tok"
rand_file "$SRC/model-00001-of-00002.safetensors" $((3 * MiB + 7))
rand_file "$SRC/model-00002-of-00002.safetensors" $((2 * MiB + 3))
rand_file "$SRC/tok/tokenizer.json" 54321
printf '{"architectures": ["Tiny"]}\n' >"$SRC/config.json"
mows_make_manifest "$SRC"

# The nodes, with nothing on /mnt/model yet (the sshfs backing they get is not used).
cluster_up --nodes $N --model "$SRC" --no-mows
SECRET=$SCRATCH/secret
# nexec I SECS CMD...: CMD on node I, killed after SECS.
nexec() { local i=$1 secs=$2; shift 2; mows_cluster exec "node$i" --timeout "$secs" -- "$@"; }
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET")

# ---- the S3 server, on the storage host ----
s3_server_start $PORT nsenter --net="$STOR_NS" env S3_ADDRESS=0.0.0.0

# upload_mount: a writable s3fs mount of the bucket on $SCRATCH/s3-upload (host mount
# namespace, storage network namespace); upload_umount ends it.
UP=$SCRATCH/s3-upload
upload_mount() {
	mkdir -p "$UP"
	mows_track_mount "$UP"
	nsenter --net="$STOR_NS" s3fs "$S3_BUCKET" "$UP" -o "passwd_file=$SCRATCH/s3.passwd,url=http://127.0.0.1:$PORT,use_path_request_style" \
		>>"$SCRATCH/s3fs.log" 2>&1 || fail "s3fs upload mount failed: $(tail -n 3 "$SCRATCH/s3fs.log")"
	local end=$((SECONDS + 15))
	until is_mounted "$UP" && stat "$UP" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && fail "the upload mount did not answer within 15 s"
		sleep 0.1
	done
}
upload_umount() {
	local end=$((SECONDS + 15))
	until fusermount3 -u "$UP" 2>/dev/null; do
		[ $SECONDS -ge $end ] && fail "cannot unmount $UP within 15 s"
		sleep 0.2
	done
}
upload_mount
find "$SRC" -mindepth 1 -maxdepth 1 -exec cp -a {} "$UP/" \; || fail "upload of $SRC into the bucket failed"
upload_umount

# ---- every node: s3fs on $SCRATCH/s3-nodeI (its own mount namespace) ----
for i in $(seq $N); do
	mkdir -p "$SCRATCH/s3-node$i"
	nexec "$i" 30 s3fs "$S3_BUCKET" "$SCRATCH/s3-node$i" -o \
		"ro,passwd_file=$SCRATCH/s3.passwd,url=http://198.18.0.1:$PORT,use_path_request_style,max_stat_cache_size=0" \
		>>"$SCRATCH/s3fs.log" 2>&1 || fail "s3fs on node$i failed: $(tail -n 3 "$SCRATCH/s3fs.log")"
	nexec "$i" 20 sh -c "until stat '$SCRATCH/s3-node$i/config.json' >/dev/null 2>&1; do sleep 0.1; done" ||
		fail "s3fs on node$i does not show the bucket within 20 s"
done

PEERS=$(for i in $(seq $N); do printf '198.18.1.%s:7070,' "$i"; done)
PEERS=${PEERS%,}
# mows_start I: mows-fuse on node I over its s3fs, in the background; its pid in mowsI.pid.
mows_start() {
	local i=$1
	rm -f "$CLUSTER_STATE/node$i.sock"
	nexec "$i" 280 sh -c "echo \$\$ >'$SCRATCH/mows$i.pid'; exec '$MOWS_FUSE' -f \
--backing '$SCRATCH/s3-node$i' --control-socket '$CLUSTER_STATE/node$i.sock' --node-id node$i \
--listen 198.18.1.$i:7070 --peers $PEERS --secret-file '$SECRET' --max-memory=32M --chunk-size=1M \
--heartbeat=200ms --peer-timeout=2s --request-timeout=3s --metadata-ttl=5m /mnt/model" \
		>>"$CLUSTER_STATE/node$i.log" 2>&1 &
}
# mows_ready SECS I...: until every node I answers a listing of its mount.
mows_ready() {
	local secs=$1 i
	shift
	for i; do
		nexec "$i" "$secs" sh -c \
			'until grep -q " /mnt/model fuse" /proc/self/mounts && ls /mnt/model >/dev/null 2>&1; do sleep 0.1; done' ||
			fail "node$i did not mount within ${secs}s: $(tail -n 5 "$CLUSTER_STATE/node$i.log")"
	done
}
# tree_of I: names, types, sizes, mtimes and modes under node I's mount, sorted.
tree_of() {
	nexec "$1" 30 sh -c 'cd /mnt/model && find . -printf "%p %y %s %T@ %m\n" | sort'
}
mows_pid() { cat "$SCRATCH/mows$1.pid"; }

# ---- a. four nodes at once: one listing ----
sleep 1 # s3fs settles (its own requests at mount)
l0=$(s3_lists) h0=$(s3_requests HEAD)
t0=$SECONDS
for i in $(seq $N); do mows_start "$i"; done
mows_ready 60 $(seq $N)
note "a: $N nodes mounted in $((SECONDS - t0)) s"
for i in $(seq $N); do tree_of "$i" >"$SCRATCH/tree$i.txt" || fail "cannot list node$i's mount"; done
l1=$(s3_lists) h1=$(s3_requests HEAD)
for i in $(seq 2 $N); do
	d=$(diff "$SCRATCH/tree1.txt" "$SCRATCH/tree$i.txt") ||
		fail "a: node$i shows another tree than node1 (< node1, > node$i): $(head -n 10 <<<"$d")"
done
nexec 1 30 sh -c "cd '$SCRATCH/s3-node1' && find . -printf '%p %y %s %m\n' | sort" >"$SCRATCH/tree-s3.txt"
d=$(diff "$SCRATCH/tree-s3.txt" <(cut -d' ' -f1-3,5 "$SCRATCH/tree1.txt")) ||
	fail "a: the mounts show another tree than s3fs (< s3fs, > mows): $(head -n 10 <<<"$d")"
cluster_sums "$SRC" "$SCRATCH/want.sums"
cluster_read "$SCRATCH/read1.json" "1-$N" || fail "a: a reader failed: $(cat "$SCRATCH/read1.json")"
cluster_check_sums "$SCRATCH/want.sums" "1-$N"

# The lister is the node ranked first for the lister's key (net/place.h, net/meta_share.h);
# the others, in rank order, form the tree that asks it.
ranked=$("$PYTHON" - $(seq $N) <<-'PY'
	import sys
	M = (1 << 64) - 1
	def fmix(h):
	    h ^= h >> 33; h = (h * 0xff51afd7ed558ccd) & M; h ^= h >> 33
	    h = (h * 0xc4ceb93e1a85ec53) & M; return h ^ (h >> 33)
	def fnv(h, b):
	    for c in b: h = ((h ^ c) * 0x100000001b3) & M
	    return h
	def node_hash(i):
	    return fmix(fnv(fnv(0xcbf29ce484222325, b"mows-node\0"), b"node%s" % i.encode()))
	k = fmix(0x6d6f77732d6d6574 ^ fmix(0x9e3779b97f4a7c15))
	print(" ".join(sorted(sys.argv[1:], key=lambda i: -fmix(node_hash(i) ^ k))))
	PY
) || fail "cannot rank the nodes"
read -r r0n r1n r2n r3n <<<"$ranked"
lister=""
grep -q "node node$r0n lists the backing" "$CLUSTER_STATE"/node*.log && lister=node$r0n
li=$r0n
# What one listing of the tree costs the store: a refresh on the lister.
sleep 1.5
r0=$(s3_lists)
cluster_ctl "$li" refresh >/dev/null || fail "a: mowsctl refresh on the lister ($lister) failed"
one=$(( $(s3_lists) - r0 ))
[ "$one" -ge 1 ] || fail "a: a refresh on $lister sent no LIST to the store ($one): the count cannot tell"
note "a: lister ${lister:-none}; one listing = $one LIST; the burst of $N nodes: $((l1 - l0)) LIST, $((h1 - h0)) HEAD"
[ $((l1 - l0)) -le "$one" ] ||
	fail "a: $N nodes starting at once sent $((l1 - l0)) LIST requests to the store; one listing is $one (each node listed the store itself?)"
[ -n "$lister" ] || fail "a: no node took node$r0n's snapshot (no 'node node$r0n lists the backing' in the logs; rank order $ranked)"

# ---- b. a changed file and a refresh on a node that is not the lister ----
other=$((li % N + 1))
rand_file "$SRC/tok/tokenizer.json" 77777
mows_make_manifest "$SRC" # the new version is checked against its CRCs like any other
sum_new=$(sha256sum <"$SRC/tok/tokenizer.json" | awk '{ print $1 }')
upload_mount
cp "$SRC/tok/tokenizer.json" "$UP/tok/tokenizer.json" && cp "$SRC"/crc32.* "$UP/" ||
	fail "b: cannot write the new version into the bucket"
upload_umount
sleep 1.5
r0=$(s3_lists)
cluster_ctl "$other" refresh >/dev/null || fail "b: mowsctl refresh on node$other failed"
end=$((SECONDS + 10))
for i in $(seq $N); do
	until got=$(nexec "$i" 10 sh -c 'stat -c %s /mnt/model/tok/tokenizer.json && sha256sum </mnt/model/tok/tokenizer.json' 2>/dev/null) &&
		[ "$(echo $got)" = "77777 $sum_new -" ]; do
		[ $SECONDS -ge $end ] && fail "b: node$i does not show the new tok/tokenizer.json within 10 s of a refresh on node$other (it shows: $(echo $got))"
		sleep 0.2
	done
done
lr=$(( $(s3_lists) - r0 ))
note "b: every node reads the new version; the refresh on node$other cost $lr LIST"
[ "$lr" -le "$one" ] || fail "b: a refresh on node$other sent $lr LIST requests; one listing is $one"

# ---- c. the lister killed: a refresh still works, and a node starting now still mounts ----
sleep 2.5 # the last listing is older than a poll: a REFRESH now lists again
kill -KILL "$(mows_pid "$li")" || fail "c: cannot kill $lister's mows-fuse"
# The others still count it live (peer_timeout 2 s): they ask the next by rank, node$r1n.
# Refreshes on the other two, back to back: one listing (node$r1n's), not one each.
other=$r2n other2=$r3n
r0=$(s3_lists)
t0=$(date +%s%N)
for n in $other $other2; do
	timeout 20 "$MOWS_CTL" -s "$CLUSTER_STATE/node$n.sock" refresh >/dev/null ||
		fail "c: mowsctl refresh on node$n right after $lister was killed failed"
done
ms=$((($(date +%s%N) - t0) / 1000000))
sleep 3 # every node polls (every 2 s) past the dead lister
lc=$(( $(s3_lists) - r0 ))
note "c: refreshes on node$other and node$other2 with $lister just killed: $ms ms, $lc LIST for the cluster"
[ "$lc" -le "$one" ] || fail "c: with $lister killed, two refreshes and the polls that followed sent $lc LIST requests; one listing is $one"
other_pid=$(mows_pid "$other")
kill -TERM "$other_pid" || fail "c: cannot stop node$other's mows-fuse"
end=$((SECONDS + 15))
while [ -e "/proc/$other_pid" ]; do
	[ $SECONDS -ge $end ] && fail "c: node$other's mows-fuse still runs 15 s after SIGTERM"
	sleep 0.1
done
nexec "$other" 10 sh -c 'umount -l /mnt/model 2>/dev/null; true'
t0=$SECONDS
mows_start "$other"
mows_ready 20 "$other"
tree_of "$other" >"$SCRATCH/tree-c.txt" || fail "c: cannot list node$other's mount"
grep -q '^./tok/tokenizer.json f 77777 ' "$SCRATCH/tree-c.txt" ||
	fail "c: node$other does not show the new tok/tokenizer.json: $(grep tokenizer "$SCRATCH/tree-c.txt")"
note "c: with $lister killed, node$other mounted again in $((SECONDS - t0)) s"
note "PASS"
