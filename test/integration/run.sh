#!/usr/bin/env bash
# Runs the integration tests: every test/integration/t_*.sh in name order, or the ones named
# as arguments (t_tree or a path). Each runs under `timeout` (300 s, or the test's own
# "# timeout: N" line) with MOWS_ROOT set and a fresh scratch dir as TMPDIR.
# Exit status of a test: 0 pass, anything else fail. 77 ("cannot run here") is a FAIL too:
# a test that should run here and cannot is a broken setup, not a pass. Only a test that
# says why a user would accept the skip, in a line "# skip-ok: REASON", counts as skipped.
# MOWS_VERBOSE=1 prints every test's whole output; otherwise a failure shows its last 40 lines.
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
default_timeout=${MOWS_TEST_TIMEOUT:-300}

if [ $# -gt 0 ]; then
	tests=()
	for t; do
		t=${t##*/}
		t=${t%.sh}
		[ -f "$here/$t.sh" ] || { echo "run.sh: no test $here/$t.sh" >&2; exit 2; }
		tests+=("$here/$t.sh")
	done
else
	mapfile -t tests < <(find "$here" -maxdepth 1 -name 't_*.sh' | sort)
fi

base=$(mktemp -d /tmp/mows-it.XXXXXX) || exit 2
passed=0 failed=0 skipped=0

# Mountpoints in /proc/mounts under $1 (octal escapes such as \040 left as they are).
mounts_under() { awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts; }

# Force-unmounts whatever is left under $1 and ends processes still running from it (a
# daemon's command line names its mountpoint there). Prints what it did; 1 if anything.
clean_leftovers() {
	local dir=$1 m pid found=0
	for m in $(mounts_under "$dir" | sort -r); do
		echo "  leftover mount: $m; fusermount3 -uz"
		fusermount3 -uz "$(printf '%b' "$m")" 2>&1 | sed 's/^/  /'
		found=1
	done
	for pid in $(pgrep -f -- "$dir/"); do
		[ "$pid" = $$ ] && continue
		echo "  leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
		kill -KILL "$pid" 2>/dev/null
		found=1
	done
	return $found
}

for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	limit=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -n 1)
	limit=${limit:-$default_timeout}
	scratch=$base/$name
	out=$base/$name.out
	mkdir -p "$scratch"
	start=$EPOCHREALTIME
	env MOWS_ROOT="$root" TMPDIR="$scratch" MOWS_ARTIFACTS="$base/artifacts/$name" \
		timeout -k 10 "$limit" bash "$t" >"$out" 2>&1 </dev/null
	rc=$?
	secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	leftovers=$(clean_leftovers "$scratch") || { [ $rc -eq 0 ] && rc=1; }
	if [ -n "$leftovers" ]; then
		printf 'leftovers after %s:\n%s\n' "$name" "$leftovers" >>"$out"
	fi

	case $rc in
	0) verdict=PASS passed=$((passed + 1)) why= ;;
	77)
		why=$(grep -m1 '^SKIP' "$out")
		if grep -q '^# skip-ok: ' "$t"; then
			verdict=SKIP skipped=$((skipped + 1))
			why="${why:-skipped} (allowed: $(sed -n 's/^# skip-ok: *//p' "$t" | head -n 1))"
		else
			verdict=FAIL failed=$((failed + 1))
			why="${why:-exit 77} -- a test that cannot run here fails (make deps installs what tests need)"
		fi ;;
	124 | 137) verdict=FAIL failed=$((failed + 1)) why="timed out after ${limit}s" ;;
	*) verdict=FAIL failed=$((failed + 1)) why="exit status $rc" ;;
	esac
	echo "$verdict $name (${secs}s)${why:+: $why}"
	if [ "${MOWS_VERBOSE:-0}" = 1 ]; then
		sed 's/^/    /' "$out"
	elif [ $verdict = FAIL ]; then
		tail -n 40 "$out" | sed 's/^/    /'
	fi
	[ -z "$(mounts_under "$scratch")" ] && rm -rf --one-file-system "$scratch"
done

# Anything still mounted from our scratch dirs is a failure of the suite.
if ! leftovers=$(clean_leftovers "$base"); then
	echo "FAIL leftovers: still mounted or running after all tests:"
	echo "$leftovers"
	failed=$((failed + 1))
fi

if [ $failed -eq 0 ] && [ -z "$(mounts_under "$base")" ]; then
	rm -rf --one-file-system "$base"
else
	echo "outputs and daemon logs kept in $base"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
