#!/bin/sh
# Builds the libFuzzer targets with ASan and UBSan and runs each for N seconds (default 12):
#   ./test/fuzz.sh [SECONDS] [TARGET...]      targets: proto ctlproto manifest config
# Exits 0 when nothing crashed, 1 when a fuzzer found a crash (its input is saved as
# test/bin/fuzz-TARGET-crash-*; replay with test/bin/fuzz_TARGET FILE) or when clang is
# missing and cannot be installed (a fuzz step that cannot run is a failure, not a skip).
# The corpus of each target grows in test/bin/corpus-TARGET across runs. FUZZ_JOBS targets
# (default 2) run at once, each on its own core; their messages are printed in target order.
# A new target: test/fuzz_NAME.c, its sources in srcs(), seed inputs in seed(), and NAME in
# the default list below.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-12}
case $secs in
''|*[!0-9]*) echo "fuzz: '$secs' is not a number of seconds; run e.g. $0 60" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
targets=${*:-proto ctlproto manifest chunkmap config metawire}

if ! command -v clang >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "fuzz: installing clang"
		apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			clang >/dev/null 2>&1 || true
	fi
	if ! command -v clang >/dev/null 2>&1; then
		echo "fuzz: FAIL: clang is not installed and could not be (run make deps, or apt-get install clang)" >&2
		exit 1
	fi
fi

# The sources each target needs besides its own test/fuzz_TARGET.c, and extra libraries.
srcs() {
	case $1 in
	proto) echo net/proto.c ;;
	ctlproto) echo common/ctlproto.c ;;
	manifest) echo cache/manifest.c common/log.c ;;
	chunkmap) echo cache/chunkmap.c cache/manifest.c common/crc.c common/log.c ;;
	config) echo common/config.c common/log.c ;;
	metawire) echo cache/meta.c common/log.c ;;
	*) echo "fuzz: no target '$1' (proto ctlproto manifest chunkmap config metawire)" >&2; exit 2 ;;
	esac
}
# common/log.c writes to journald (libsystemd); common/crc.c is ISA-L's; config is inih's.
libs() {
	case $1 in
	manifest) pkg-config --libs libsystemd ;;
	chunkmap) pkg-config --libs libsystemd libisal ;;
	config) pkg-config --libs inih libsystemd ;;
	metawire) pkg-config --libs libsystemd ;;
	esac
}

# A few valid inputs to start from; libFuzzer mutates them.
seed() {
	d=test/bin/corpus-$1
	mkdir -p "$d"
	case $1 in
	proto)
		printf 'MOWS\001\005\000\000\000\000\000\010\000\000\000\001\000\000\000\000\000\000\000\052' >"$d/seed-ping"
		printf 'MOWS\001\022\000\000\000\000\000\023\000\000\000\001\000\000\000\000\000\000\000\000\000\000\000\003\000\000\000\000abc' >"$d/seed-piece" ;;
	ctlproto)
		printf 'status json\n' >"$d/seed-status"
		printf 'prefetch text\t/mnt/a\\nb\t/mnt/c\\x80d\\\\e\n' >"$d/seed-prefetch"
		printf '%% 100 200 dir/a\\tb.bin' >"$d/seed-progress"
		printf '= 0' >"$d/seed-end"
		printf 'quote" \316\273 \377 \340\200\200 tab\t' >"$d/seed-name" ;;
	manifest)
		printf '# crc32.txt\ncbf43926  a.bin\nCBF43926 sub/b c.bin\n0000000g bad\n00000000 ../x\n' >"$d/seed-manifest" ;;
	chunkmap)
		# first byte: the regrouping target's multiple
		printf '\002# crc32.chunks\nmows-crc32-chunks 1 4096\n5000 a.bin cbf43926 00000001\n0 empty\n4096 d/b 12345678\n' >"$d/seed-chunks" ;;
	config)
		# every key of the example, uncommented: small inputs keep the fuzzer fast
		{ echo '[mows]'; sed -n 's/^#\([a-z_0-9]* =\)/\1/p' mows.conf.example; } >"$d/seed-example"
		printf '[mows]\nmax_memory = 2G ; two\nchunk_size=4M\nverify = strict\npeers = a:1,b:2\nfill_timeout = 3s\n' >"$d/seed-small" ;;
	metawire)
		# a root with one file "a" and a symlink "l" -> "a" (cache/meta.h's wire form)
		{ printf 'MWMS\000\001\000\000\000\000\000\003'; head -c 64 /dev/zero
		  printf '\000\000\000\000\000\000\101\355'; head -c 60 /dev/zero
		  printf '\000\000\000\000\000\000\201\244'; head -c 12 /dev/zero
		  printf '\000\000\000\000\000\000\000\005'; head -c 36 /dev/zero; printf '\000\001\000\000a'
		  printf '\000\000\000\000\000\000\241\377'; head -c 56 /dev/zero; printf '\000\001\000\001la'
		} >"$d/seed-tree" ;;
	esac
}

# One target: build, seed, run. Its messages go to test/bin/fuzz_TARGET.msg; 0 or 1.
one() {
	t=$1
	msg=test/bin/fuzz_$t.msg
	log=test/bin/fuzz_$t.log
	s=$(srcs "$t")
	# shellcheck disable=SC2046,SC2086
	if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-Wall -Wextra -Werror -I. -D_GNU_SOURCE $(pkg-config --cflags inih) $s \
		"test/fuzz_$t.c" -o "test/bin/fuzz_$t" $(libs "$t") >"$msg" 2>&1; then
		echo "fuzz: $t FAIL: test/fuzz_$t.c does not build" >>"$msg"
		return 1
	fi
	seed "$t"
	echo "fuzz: $t for ${secs}s" >>"$msg"
	if "./test/bin/fuzz_$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
		-artifact_prefix="test/bin/fuzz-$t-" "test/bin/corpus-$t" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		echo "fuzz: $t PASS, no crash in ${secs}s (${runs:-?} inputs)" >>"$msg"
		return 0
	fi
	tail -n 40 "$log" >>"$msg"
	echo "fuzz: $t FAIL, crash input saved as test/bin/fuzz-$t-*; log in $log" >>"$msg"
	return 1
}

# A lane runs its targets one after another; FUZZ_JOBS lanes (default 2, one per core of
# the CI machine) run at once, so each fuzzer still has a core for its full SECONDS.
lane() { # N: the targets whose index modulo FUZZ_JOBS is N
	lrc=0 i=0
	for t in $targets; do
		[ $((i % jobs)) -eq "$1" ] && { one "$t" || lrc=1; }
		i=$((i + 1))
	done
	return $lrc
}

jobs=${FUZZ_JOBS:-2}
case $jobs in
''|*[!0-9]*|0) echo "fuzz: FUZZ_JOBS '$jobs' is not a positive number; run e.g. FUZZ_JOBS=2 $0" >&2; exit 2 ;;
esac
mkdir -p test/bin
for t in $targets; do srcs "$t" >/dev/null; rm -f "test/bin/fuzz_$t.msg"; done
pids=
n=0
while [ $n -lt "$jobs" ]; do
	lane $n &
	pids="$pids $!"
	n=$((n + 1))
done
rc=0
for p in $pids; do wait "$p" || rc=1; done
for t in $targets; do
	if grep -q "^fuzz: $t PASS" "test/bin/fuzz_$t.msg" 2>/dev/null; then
		cat "test/bin/fuzz_$t.msg"
	else
		cat "test/bin/fuzz_$t.msg" >&2 2>/dev/null || echo "fuzz: $t FAIL: it did not run" >&2
		rc=1
	fi
done
exit $rc
