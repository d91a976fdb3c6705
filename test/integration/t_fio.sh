#!/usr/bin/env bash
# fio verifies data it wrote to the backing file, reading it through the mount with psync
# and mmap, sequentially and at random, with a cache smaller than the file.
# timeout: 240
. "$(dirname "$0")/lib.sh"
need_cmd fio

B=$SCRATCH/backing
M=$SCRATCH/mnt
mkdir -p "$B"
common=(--verify_state_save=0 --bs=16k --size=32M --verify=crc32c --norandommap=0 --randrepeat=1)

out=$(fio --name=fill --filename="$B/fio.dat" --rw=write --ioengine=psync "${common[@]}" \
	--do_verify=0 2>&1) || fail "fio could not write $B/fio.dat: $out"
# A copy with one bad byte: fio must reject it, or the checks below prove nothing.
cp "$B/fio.dat" "$B/fio-bad.dat"
py flipbyte "$B/fio-bad.dat" $((5 * MiB + 777))

mows_mount "$B" "$M" --chunk-size=1M --max-memory=16M

run_fio() { # NAME FILE RW ENGINE
	fio --name="$1" --filename="$2" --rw="$3" --ioengine="$4" "${common[@]}" \
		--do_verify=1 --readonly >"$SCRATCH/$1.out" 2>&1
}

for engine in psync mmap; do
	for rw in read randread; do
		drop_caches
		run_fio "$rw-$engine" "$M/fio.dat" $rw $engine ||
			fail "fio --rw=$rw --ioengine=$engine --verify=crc32c --readonly on $M/fio.dat failed (status $?):"$'\n'"$(grep -iE 'verify|error|err=' "$SCRATCH/$rw-$engine.out" | head -n 15)"
		grep -qi 'verify failed' "$SCRATCH/$rw-$engine.out" &&
			fail "fio $rw/$engine reported verify errors: $(grep -i 'verify failed' "$SCRATCH/$rw-$engine.out" | head -n 3)"
	done
done

drop_caches
run_fio bad "$M/fio-bad.dat" read psync &&
	fail "fio verified $M/fio-bad.dat although one byte of it is wrong"
grep -qi 'verify failed' "$SCRATCH/bad.out" ||
	fail "fio failed on fio-bad.dat but not by a verify error: $(tail -n 5 "$SCRATCH/bad.out")"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
