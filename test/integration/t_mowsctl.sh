#!/usr/bin/env bash
# mowsctl: status (human and JSON with every documented field), prefetch fills the cache
# from the backing, evict empties it, verify tells a good file from a corrupted one, and
# the control socket is private to its owner.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
mows_make_tree "$B"
mows_make_manifest "$B"
bad=sub/a/b/c/shard.bin
py flipbyte "$B/$bad" 1000
rand_file "$B/unlisted.bin" 5000
rel=big.bin
size=$(stat -c %s "$B/$rel")
st=$SCRATCH/st.json

# passthrough = off: this test counts the reads the daemon serves; passthrough reads bypass it.
mows_mount "$B" "$M" --chunk-size=1M --max-memory=64M --verify=file --passthrough=off
assert_eq 600 "$(stat -c %a "$MOWS_SOCK")" "mode of the control socket $MOWS_SOCK"

out=$(mows_ctl status 2>&1) || fail "mowsctl -s $MOWS_SOCK status exited $?: $out"
[ -n "$out" ] || fail "mowsctl status printed nothing"
[[ $out == "{"* ]] && fail "mowsctl status without --json printed JSON"
note "status: $(head -n 3 <<<"$out")"

mows_status_json "$st"
assert_ok "fields of status --json" -- py status-check "$st"
jget v "$st" 'j["mountpoint"]'
assert_eq "$M" "$v" "mountpoint"
jget v "$st" 'j["backing"]'
assert_eq "$B" "$v" "backing"
jget v "$st" 'j["memory"]["max"]'
assert_eq $((64 * MiB)) "$v" "memory.max"
jget v "$st" 'j["chunks"]["size"]'
assert_eq $MiB "$v" "chunks.size"

# prefetch: the whole file comes from the backing, once.
jget before "$st" 'j["bytes_from_backing"]'
out=$(mows_ctl prefetch "$M/$rel" 2>&1) || fail "mowsctl prefetch $M/$rel exited $?: $out"
mows_status_json "$st"
assert_ok "fields after prefetch" -- py status-check "$st"
jget after "$st" 'j["bytes_from_backing"]'
assert_eq "$size" $((after - before)) "bytes_from_backing growth from prefetching $rel ($size bytes)"
jget f "$st" 'file("'"$rel"'")'
[ "$f" != null ] || fail "status files has no entry with path '$rel' after prefetch: $(head -c 600 "$st")"
jget v "$st" 'file("'"$rel"'")["size"]'
assert_eq "$size" "$v" "files[$rel].size"
jget v "$st" 'file("'"$rel"'")["cached_bytes"]'
assert_eq "$size" "$v" "files[$rel].cached_bytes after prefetch"
jget v "$st" 'file("'"$rel"'")["state"]'
[[ $v == cached || $v == verified ]] || fail "files[$rel].state after prefetch is '$v', expected cached or verified"

# Reading it now costs the backing nothing and counts as hits.
jget hits0 "$st" 'j["hits"]'
drop_caches
assert_cmp "$B/$rel" "$M/$rel"
mows_status_json "$st"
jget v "$st" 'j["bytes_from_backing"]'
# Nothing of it; only the readahead that runs on past its end into the file after it.
jget ahead "$st" 'j["readahead_next_file"]'
assert_le $((v - after)) $((ahead * MiB)) "bytes_from_backing growth reading the prefetched $rel (at most the $ahead chunks read ahead into the next file)"
jget hits1 "$st" 'j["hits"]'
[ "$hits1" -gt "$hits0" ] || fail "hits did not grow ($hits0 -> $hits1) reading the prefetched $rel"

# evict: nothing of it stays cached; the next read goes to the backing again.
out=$(mows_ctl evict "$M/$rel" 2>&1) || fail "mowsctl evict $M/$rel exited $?: $out"
mows_status_json "$st"
jget v "$st" 'file("'"$rel"'")["cached_bytes"]'
assert_eq 0 "$v" "files[$rel].cached_bytes after evict"
jget before "$st" 'j["bytes_from_backing"]'
drop_caches
assert_cmp "$B/$rel" "$M/$rel"
mows_status_json "$st"
jget v "$st" 'j["bytes_from_backing"]'
[ $((v - before)) -ge "$size" ] || fail "reading $rel after evict took $((v - before)) bytes from the backing, expected $size"

# verify
out=$(mows_ctl verify "$M/$rel" 2>&1) || fail "mowsctl verify $M/$rel (matches the manifest) exited $?: $out"
grep -qi ok <<<"$out" || fail "mowsctl verify $M/$rel exited 0 but does not say ok: $out"
out=$(mows_ctl verify "$M/$bad" 2>&1)
rc=$?
assert_eq 1 $rc "mowsctl verify exit status on $bad, corrupted after the manifest (output: $out)"
grep -qi mismatch <<<"$out" || fail "mowsctl verify $M/$bad does not say mismatch: $out"
mows_status_json "$st"
jget v "$st" 'file("'"$bad"'")["state"]'
assert_eq mismatch "$v" "files[$bad].state after verify found the mismatch"
out=$(mows_ctl verify "$M/unlisted.bin" 2>&1) || fail "mowsctl verify of a file missing from the manifest exited $?: $out"
grep -Eqi 'manifest|entry|listed|no crc' <<<"$out" ||
	fail "mowsctl verify $M/unlisted.bin does not say it has no manifest entry: $out"
# A good file verified after the bad one is still fine.
out=$(mows_ctl verify "$M/chunk+1.bin" 2>&1) || fail "mowsctl verify $M/chunk+1.bin exited $?: $out"

# Several paths at once, and errors.
out=$(mows_ctl prefetch "$M/one.bin" "$M/page.bin" 2>&1) || fail "mowsctl prefetch of two files exited $?: $out"
mows_status_json "$st"
jget v "$st" 'file("page.bin")["cached_bytes"]'
assert_eq 4096 "$v" "files[page.bin].cached_bytes after prefetching two files"
out=$(mows_ctl prefetch "$M/no-such-file" 2>&1) && fail "mowsctl prefetch of a missing file succeeded: $out"
out=$("$MOWS_CTL" -s "$SCRATCH/no-such.sock" status 2>&1) && fail "mowsctl on a missing socket succeeded: $out"
[[ $out == *"$SCRATCH/no-such.sock"* ]] || fail "mowsctl on a missing socket does not name it: $out"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
