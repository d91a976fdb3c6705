#!/usr/bin/env bash
# Bad settings stop mows-fuse with status 2 and one message naming the file and line, the
# key and the value; a bad crc32.txt entry only earns a warning and is skipped.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
mkdir -p "$M"
mows_track_mount "$M"
rand_file "$B/good.bin" $((1 * MiB + 5))
rand_file "$B/other.bin" 777
n=0

conf() { # NAME LINES...: writes $SCRATCH/NAME, one argument a line; sets CONF
	CONF=$SCRATCH/$1
	shift
	printf '%s\n' "$@" >"$CONF"
}

# expect_exit2 LABEL ARGS...: mows-fuse -f ARGS MNT must exit with status 2 within 10 s,
# without mounting, and say why on stderr ($ERRF). Records a failure and returns 1 if not.
expect_exit2() {
	local label=$1 pid rc
	shift
	n=$((n + 1))
	ERRF=$SCRATCH/case$n.err
	LABEL=$label
	"$MOWS_FUSE" -f "$@" "$M" >"$SCRATCH/case$n.out" 2>"$ERRF" </dev/null &
	pid=$!
	mows_track_pid $pid
	if ! wait_pid_gone $pid 10; then
		soft_fail "$label: 'mows-fuse -f $* $M' still running after 10 s$(is_mounted "$M" && echo ' and mounted'); expected exit 2"
		fusermount3 -u "$M" 2>/dev/null
		kill -TERM $pid 2>/dev/null
		wait_pid_gone $pid 5 || kill -KILL $pid
		return 1
	fi
	wait $pid
	rc=$?
	if is_mounted "$M"; then
		soft_fail "$label: $M left mounted"
		fusermount3 -uz "$M"
	fi
	if [ $rc -ne 2 ]; then
		soft_fail "$label: 'mows-fuse -f $* $M' exited $rc, expected 2; stderr: $(head -c 600 "$ERRF")"
		return 1
	fi
	[ -s "$ERRF" ] || { soft_fail "$label: exit 2 but nothing on stderr"; return 1; }
	note "$label: $(head -n 3 "$ERRF")"
}

# says EREGEX...: each pattern must match the last case's stderr.
says() {
	local re
	for re; do
		grep -Eq -- "$re" "$ERRF" || soft_fail "$LABEL: stderr lacks /$re/: $(head -c 600 "$ERRF")"
	done
}
q() { sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1"; } # a fixed string as an ERE

conf unknown-key.conf '# mows test config' 'max_memory = 64M' 'bogus_key = zebra42'
expect_exit2 "unknown key" -c "$CONF" --backing "$B" &&
	says 'unknown-key\.conf:3([^0-9]|$)' bogus_key zebra42

conf bad-size.conf '# sizes' '[mows]' 'chunk_size = 1M' 'max_memory = 200Q'
expect_exit2 "bad size in file" -c "$CONF" --backing "$B" &&
	says 'bad-size\.conf:4([^0-9]|$)' 'max[-_]memory' "'?200Q'?"

expect_exit2 "bad size on the command line" --backing "$B" --max-memory=200Q &&
	says 'max[-_]memory' 200Q

conf bad-enum.conf "backing = $B" 'verify = sometimes'
expect_exit2 "bad enum" -c "$CONF" &&
	says 'bad-enum\.conf:2([^0-9]|$)' verify sometimes

conf bad-chunk.conf "backing = $B" '' 'chunk_size = 3M'
expect_exit2 "chunk size not a power of two" -c "$CONF" &&
	says 'bad-chunk\.conf:3([^0-9]|$)' 'chunk[-_]size' 3M

expect_exit2 "backing missing" --backing "$SCRATCH/no-such-dir" &&
	says backing "$(q "$SCRATCH/no-such-dir")"

conf missing-backing.conf "backing = $SCRATCH/also-missing"
expect_exit2 "backing missing, from a file" -c "$CONF" &&
	says backing "$(q "$SCRATCH/also-missing")"

expect_exit2 "backing not a directory" --backing "$B/good.bin" &&
	says backing "$(q "$B/good.bin")"

conf huge.conf "backing = $B" 'max_memory = 1000T'
expect_exit2 "max_memory more than the machine has" -c "$CONF" &&
	says 'max[-_]memory' '1000T|1099511627776000'

conf tiny.conf "backing = $B" 'max_memory = 1M'
expect_exit2 "max_memory too small for one chunk" -c "$CONF" &&
	says 'max[-_]memory' '1M([^0-9A-Za-z]|$)|1048576'

long=$(printf 'a%.0s' $(seq 1 300))
conf long-line.conf "backing = $B" "crc32_file = $long" 'verify = file'
expect_exit2 "overlong line" -c "$CONF" &&
	says 'long-line\.conf:2([^0-9]|$)' 'crc32[-_]file'

conf section.conf "backing = $B" '[other]' 'max_memory = 64M'
expect_exit2 "unknown section" -c "$CONF" &&
	says 'section\.conf:[23]([^0-9]|$)' other

expect_exit2 "missing config file" -c "$SCRATCH/no-such.conf" --backing "$B" &&
	says "$(q "$SCRATCH/no-such.conf")"

# A good file, with keys before any section and in [mows], '-' and '_' alike; the
# command line overrides it.
conf good.conf "backing = $B" 'max_memory = 32M' '' '[mows]' 'chunk-size = 1M' 'verify = file'
mows_mount "" "$M" -c "$CONF" --max-memory=48M
mows_status_json "$SCRATCH/st.json"
jget mmax "$SCRATCH/st.json" 'j["memory"]["max"]'
jget csize "$SCRATCH/st.json" 'j["chunks"]["size"]'
assert_eq $((48 * MiB)) "$mmax" "memory.max with max_memory = 32M in the file and --max-memory=48M"
assert_eq $MiB "$csize" "chunks.size with chunk-size = 1M in [mows]"
assert_cmp "$B/good.bin" "$M/good.bin"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"

# crc32.txt with a malformed entry and one that points outside the root: warnings, and the
# good entry still counts.
printf '%s good.bin\nzzzzzzzz not-hex.bin\ndeadbeef ../../etc/passwd\n' "$(py crc32 "$B/good.bin")" \
	>"$B/crc32.txt"
mows_mount "$B" "$M" --verify=file
assert_cmp "$B/good.bin" "$M/good.bin"
assert_cmp "$B/other.bin" "$M/other.bin"
warned() {
	grep -E 'crc32\.txt:2([^0-9]|$)' "$MOWS_LOG" | grep -Eq 'zzzzzzzz|not-hex\.bin' &&
		grep -E 'crc32\.txt:3([^0-9]|$)' "$MOWS_LOG" | grep -qF '../../etc/passwd'
}
retry_until 5 warned || soft_fail "daemon log lacks warnings naming crc32.txt:2 (zzzzzzzz) and crc32.txt:3 (../../etc/passwd): $(grep -i crc32 "$MOWS_LOG" | head -n 5)"
out=$(mows_ctl verify "$M/good.bin" 2>&1) || fail "mowsctl verify $M/good.bin exited $?: $out"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
soft_done
