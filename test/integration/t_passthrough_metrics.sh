#!/usr/bin/env bash
# Passthrough opens are counted (the kernel serves their reads, so mows sees only the opens):
# `mowsctl status --json` and /metrics report the opens that went passthrough, the file bytes
# they made readable (the file's size per open) and how many are open now; a mount with
# passthrough = off counts none of its opens. Needs a kernel with FUSE passthrough (6.9+).
# timeout: 90
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || fail "needs curl (make deps installs it)"

B=$SCRATCH/backing
M=$SCRATCH/mnt
mkdir -p "$B"
big=$((5 * MiB + 321))
rand_file "$B/w.bin" $big
rand_file "$B/v.bin" 4096
mows_make_manifest "$B"
mport=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# status_is OPENS BYTES NOW: status --json and /metrics both say so.
status_is() {
	local j=$SCRATCH/st.json o b n mo mb mn
	mows_status_json "$j"
	jget o "$j" 'j["passthrough_opens"]'
	jget b "$j" 'j["passthrough_bytes_opened"]'
	jget n "$j" 'j["passthrough_open_now"]'
	curl -fsS "http://127.0.0.1:$mport/metrics" >"$SCRATCH/m.txt" || return 1
	mo=$(sed -n 's/^mows_passthrough_opens_total //p' "$SCRATCH/m.txt")
	mb=$(sed -n 's/^mows_passthrough_opened_bytes_total //p' "$SCRATCH/m.txt")
	mn=$(sed -n 's/^mows_passthrough_open_files //p' "$SCRATCH/m.txt")
	LAST="status: opens $o, bytes $b, open now $n; metrics: $mo, $mb, $mn"
	[ "$o $b $n" = "$1 $2 $3" ] && [ "$mo $mb $mn" = "$1 $2 $3" ]
}

mows_mount "$B" "$M" --passthrough=on --open-wait=complete --max-memory=64M \
	--metrics-listen="127.0.0.1:$mport"
grep -q 'passthrough: on' "$MOWS_LOG" ||
	fail "passthrough is not on here (needs kernel 6.9+ with FUSE passthrough): $(grep passthrough "$MOWS_LOG")"
retry_until 10 curl -fsS -o /dev/null "http://127.0.0.1:$mport/metrics" || fail "no /metrics on $mport"
status_is 0 0 0 || fail "before any open: $LAST"

# Two opens of w.bin at once (open_wait = complete: both passthrough), bytes right.
exec 3<"$M/w.bin" 4<"$M/w.bin"
cmp - "$B/w.bin" <&3 || fail "w.bin read through the first passthrough open differs"
cmp - "$B/w.bin" <&4 || fail "w.bin read through the second passthrough open differs"
[ "$(grep -c 'w.bin opens onto its cache file' "$MOWS_LOG")" -ge 1 ] ||
	fail "w.bin did not open in passthrough mode"
status_is 2 $((2 * big)) 2 || fail "two passthrough opens held: $LAST"
exec 3<&- 4<&-
# The kernel sends RELEASE asynchronously.
retry_until 5 status_is 2 $((2 * big)) 0 || fail "after closing both: $LAST"

# One more open of another file adds its own size.
cmp "$M/v.bin" "$B/v.bin" || fail "v.bin differs"
retry_until 5 status_is 3 $((2 * big + 4096)) 0 || fail "after v.bin: $LAST"
mows_umount "$M"

# passthrough = off: the same reads count no passthrough open.
mport=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mows_mount "$B" "$M" --passthrough=off --max-memory=64M --metrics-listen="127.0.0.1:$mport"
retry_until 10 curl -fsS -o /dev/null "http://127.0.0.1:$mport/metrics" || fail "no /metrics on $mport"
cmp "$M/w.bin" "$B/w.bin" || fail "w.bin differs with passthrough = off"
cmp "$M/v.bin" "$B/v.bin" || fail "v.bin differs with passthrough = off"
status_is 0 0 0 || fail "passthrough = off counted passthrough opens: $LAST"
note "ok"
