#!/usr/bin/env bash
# warm_restart = on: the cache files and their index outlive the daemon. A new daemon adopts
# every chunk whose version is unchanged and whose bytes still give the indexed CRC, and reads
# nothing else from storage: a backing file changed while no daemon ran is read afresh (no
# mix), a chunk whose cached bytes were damaged is read again, and a torn index means a cold
# start (everything read from storage), never wrong bytes. A daemon killed with SIGKILL
# leaves the index it wrote while running, and the next one adopts from it.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
S=$SCRATCH/store
mkdir -p "$B"
rand_file "$B/a.bin" $((9 * MiB + 5))
rand_file "$B/c.bin" $((3 * MiB + 7))
rand_file "$B/d.bin" $((2 * MiB))
mows_make_manifest "$B"
total=$(( (9 + 3 + 2) * MiB + 12 ))
opts=(--chunk-size=1M --max-memory=64M --warm-restart=on --cache-dir="$S")

from_backing() {
	local v
	mows_status_json "$SCRATCH/st.json"
	jget v "$SCRATCH/st.json" 'j["bytes_from_backing"]'
	echo "$v"
}
read_all() { for f in a.bin c.bin d.bin; do assert_cmp "$B/$f" "$M/$f"; done; }

mows_mount "$B" "$M" "${opts[@]}"
read_all
assert_eq "$total" "$(from_backing)" "bytes from storage, first daemon"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
[ -f "$S/index" ] || fail "no index in $S after a clean exit with warm_restart = on"

# While no daemon runs: c.bin changes, and one byte of a.bin's cached chunk 3 is damaged.
rand_file "$SCRATCH/c.new" $((3 * MiB + 7))
mv "$SCRATCH/c.new" "$B/c.bin"
touch -d '+5 seconds' "$B/c.bin"
mows_make_manifest "$B"
afile=$(find "$S" -type f -size $((9 * MiB + 5))c | head -n 1)
[ -n "$afile" ] || fail "no kept cache file of a.bin's size in $S"
py flipbyte "$afile" $((3 * MiB + 100))

mows_mount "$B" "$M" "${opts[@]}"
grep -q 'warm restart: adopted' "$MOWS_LOG" || fail "no 'warm restart: adopted' line"
read_all
want=$(( 3 * MiB + 7 + MiB ))
assert_eq "$want" "$(from_backing)" "bytes from storage after a warm restart (c.bin, which changed, and a.bin's damaged chunk)"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"

# SIGKILL: the index the daemon wrote while it ran is enough (every adopted chunk's CRC is
# checked again, and files it does not list are removed).
mows_mount "$B" "$M" "${opts[@]}"
read_all
assert_eq 0 "$(from_backing)" "bytes from storage after a second warm restart"
sleep 3 # the index is written every 2 s while chunks change
kill -KILL "$MOWS_PID"
wait_pid_gone "$MOWS_PID" 5 || fail "the daemon survived SIGKILL"
fusermount3 -uz "$M"
mows_mount "$B" "$M" "${opts[@]}"
grep -q 'warm restart: adopted 16 chunks' "$MOWS_LOG" ||
	fail "after SIGKILL: not every chunk adopted: $(grep 'warm restart' "$MOWS_LOG")"
read_all
assert_eq 0 "$(from_backing)" "bytes from storage after SIGKILL and a restart"
mows_umount "$M"

# A torn index: a cold start.
[ -f "$S/index" ] || fail "no index after the second clean exit"
truncate -s 50 "$S/index"
mows_mount "$B" "$M" "${opts[@]}"
grep -q 'torn or of another version' "$MOWS_LOG" || fail "a torn index was not reported"
read_all
assert_eq "$total" "$(from_backing)" "bytes from storage after a torn index (a cold start)"
mows_umount "$M"

# warm_restart = off removes the store at exit.
mows_mount "$B" "$M" --chunk-size=1M --max-memory=64M --cache-dir="$S"
mows_umount "$M"
is_mounted "$S" && fail "$S is still mounted after a daemon with warm_restart = off"
exit 0
