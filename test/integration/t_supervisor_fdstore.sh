#!/usr/bin/env bash
# supervise = on under systemd, when the supervisor itself dies: the mount's descriptors
# (/dev/fuse, the table of opens, the INIT to replay) are in systemd's file descriptor store,
# so the service's automatic restart serves the same mount. test/integration/fake_systemd.py
# plays systemd (notify socket, fd store with FDSTORE/FDSTOREREMOVE/FDNAME, LISTEN_FDS on the
# next start, a crash handled as Restart=on-failure with KillMode=control-group would):
#   - the first start stores mows-fuse, mows-opens and mows-state;
#   - with 2 read() and 2 mmap readers mid-file, the supervisor gets SIGKILL and its serving
#     process SIGTERM (what systemd does to a unit whose main process died); the restarted
#     service takes the mount back: the mount never goes, 0 reader errors, every byte right,
#     READY=1 again, restarts counted, the new process read nothing from storage;
#   - a clean stop unmounts and removes what it stored.
# Without the store (a supervisor that does not take the descriptors back) the restarted
# service mounts a second time over the first, whose readers then hang: this test fails.
# timeout: 180
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
S=$SCRATCH/store
SD=$SCRATCH/systemd
mkdir -p "$B" "$M" "$SD"
for f in r1 r2 m1 m2; do rand_file "$B/$f.bin" $((12 * MiB + 4097)); done
mows_make_manifest "$B"
M=$(realpath "$M")
MOWS_SOCK=$SCRATCH/ctl.sock

"$PYTHON" "$MOWS_IT/fake_systemd.py" "$SD" -- "$MOWS_FUSE" -f --backing "$B" \
	--control-socket "$MOWS_SOCK" --log-level=debug --supervise=on --chunk-size=1M \
	--max-memory=128M --cache-dir="$S" "$M" &
mows_track_pid $!
mows_track_mount "$M"
_MOWS_LOGS+=("$SD/log")

wait_file() { # NAME SECS WHAT
	retry_until "$2" test -s "$SD/$1" ||
		fail "$3 within $2 s; the service's log ends: $(tail -n 5 "$SD/log" 2>/dev/null)"
}

wait_file ready1 15 "the first start sent no READY=1"
wait_file store1 10 "the supervisor stored no mows-fuse, mows-opens and mows-state"
sup1=$(cat "$SD/ready1")
note "first start: supervisor $sup1 ready; stored: $(cat "$SD/store1")"
for f in r1 r2 m1 m2; do cat "$M/$f.bin" >/dev/null || fail "warming $f.bin"; done
sleep 3 # the warm-restart index is written every 2 s while chunks change

READERS=()
for f in r1 r2 m1 m2; do
	mode=read
	[ "${f:0:1}" = m ] && mode=mmap
	timeout 60 "$PYTHON" "$MOWS_IT/slow_reader.py" "$mode" "$M/$f.bin" "$SCRATCH/out.$f" 0.1 &
	READERS+=($!)
done
sleep 0.5 # the readers are mid-file

mows_status_json "$SCRATCH/st0.json"
jget backing_before "$SCRATCH/st0.json" 'j["bytes_from_backing"]'
t0=$EPOCHREALTIME
: >"$SD/crash"
wait_file crashed 30 "the fake systemd did not restart the service"
note "after the crash the store held: $(cat "$SD/crashed")"
wait_file ready2 15 "the restarted service sent no READY=1"
took=$(echo "$EPOCHREALTIME - $t0" | bc)
sup2=$(cat "$SD/ready2")
[ "$sup2" != "$sup1" ] || fail "READY=1 came from the old supervisor $sup1"
grep -q "took the mount of $M back from systemd's fd store" "$SD/log" ||
	fail "the new supervisor did not say it took the mount back: $(grep supervisor "$SD/log" | tail -n 5)"
is_mows_mounted "$M" || fail "$M is no longer a mows mount after the supervisor's restart"
[ "$(grep -c " $M fuse" /proc/mounts)" -eq 1 ] ||
	fail "$M is mounted $(grep -c " $M fuse" /proc/mounts) times: the restart mounted again"

for pid in "${READERS[@]}"; do wait "$pid"; done
for f in r1 r2 m1 m2; do
	got=$(cat "$SCRATCH/out.$f" 2>/dev/null)
	want="ok $(sha256sum <"$B/$f.bin" | cut -d' ' -f1)"
	[ "$got" = "$want" ] || soft_fail "reader $f across the supervisor's death: '$got' (want '$want')"
done
soft_done
mows_status_json "$SCRATCH/st.json"
jget restarts "$SCRATCH/st.json" 'j["restarts"]'
jget from_backing "$SCRATCH/st.json" 'j["bytes_from_backing"]'
[ "$restarts" -ge 1 ] || fail "status says restarts = $restarts after the supervisor's restart"
assert_eq 0 "$from_backing" "bytes the new serving process read from storage (the cache was warm; before: $backing_before)"
note "supervisor $sup1 killed: supervisor $sup2 serving the same mount ${took} s later (READY=1); 4 readers, every byte right"

: >"$SD/stop"
wait_file stopped 40 "the service did not stop on SIGTERM"
assert_eq "[]" "$(cat "$SD/stopped")" "what the fd store holds after a clean stop"
retry_until 5 sh -c "! grep -q ' $M fuse' /proc/mounts" || fail "$M still mounted after a clean stop"
note "pass"
