#!/bin/sh
# Builds test/fuzz_proto.c with libFuzzer, ASan and UBSan and runs it for N seconds
# (default 20): ./test/fuzz_proto.sh [seconds]. Exits 0 when nothing crashed, 1 when the
# fuzzer found a crash (its input is saved as test/bin/fuzz-crash-*), 77 (skip) only when
# clang is missing and cannot be installed.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-20}
case $secs in
''|*[!0-9]*) echo "fuzz_proto: '$secs' is not a number of seconds; run e.g. $0 60" >&2; exit 2 ;;
esac

if ! command -v clang >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "fuzz_proto: installing clang"
		apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			clang >/dev/null 2>&1 || true
	fi
	if ! command -v clang >/dev/null 2>&1; then
		echo "fuzz_proto: SKIP: clang is not installed and could not be (apt-get install clang)"
		exit 77
	fi
fi

mkdir -p test/bin
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Wall -Wextra -Werror -I. -D_GNU_SOURCE net/proto.c test/fuzz_proto.c \
	-o test/bin/fuzz_proto

# A seed corpus of valid frames would help; libFuzzer finds the magic quickly without one.
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
printf 'MOWS\001\005\000\000\000\000\000\010\000\000\000\001\000\000\000\000\000\000\000\052' \
	>"$corpus/ping"
echo "fuzz_proto: fuzzing for ${secs}s"
if ./test/bin/fuzz_proto -max_total_time="$secs" -print_final_stats=1 \
	-artifact_prefix=test/bin/fuzz- "$corpus" 2>test/bin/fuzz_proto.log; then
	tail -n 12 test/bin/fuzz_proto.log | grep -E '^(stat::number_of_executed_units|Done)' || true
	echo "fuzz_proto: PASS, no crash in ${secs}s"
	exit 0
fi
tail -n 40 test/bin/fuzz_proto.log >&2
echo "fuzz_proto: FAIL, crash input saved as test/bin/fuzz-crash-*; log in test/bin/fuzz_proto.log" >&2
exit 1
