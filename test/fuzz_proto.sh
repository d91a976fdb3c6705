#!/bin/sh
# The peer frame parser's fuzzer alone: ./test/fuzz_proto.sh [seconds]. See test/fuzz.sh.
exec "$(dirname "$0")/fuzz.sh" "${1:-20}" proto
