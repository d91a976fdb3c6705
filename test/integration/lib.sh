# shellcheck shell=bash
# Sourced by every test/integration/t_*.sh. Gives a scratch dir that is cleaned up on any
# exit (unmount, stop the daemons this test started, remove the dir), helpers to mount
# mows-fuse and build test trees, and fail/assert helpers that say what went wrong.
#
# Globals after mows_mount: MOWS_PID, MOWS_SOCK, MOWS_LOG (of the latest mount).

set -u -o pipefail

MOWS_ROOT=${MOWS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
MOWS_IT=$MOWS_ROOT/test/integration
MOWS_FUSE=$MOWS_ROOT/mows-fuse
MOWS_CTL=$MOWS_ROOT/mowsctl
MOWS_CRC32=$MOWS_ROOT/mows-crc32
MOWS_TEST=$(basename "$0" .sh)
export LC_ALL=C

MiB=$((1 << 20))

# ---- messages --------------------------------------------------------------------------

note() { printf '%s: %s\n' "$MOWS_TEST" "$*"; }

fail() {
	_MOWS_FAILMSG="$*"
	printf 'FAIL: %s: %s\n' "$MOWS_TEST" "$*" >&2
	exit 1
}

# soft_fail MSG: records a failure and goes on, so one run reports every broken case;
# soft_done ends the test as failed if any was recorded (cleanup does too).
declare -a _MOWS_SOFT=()
soft_fail() {
	_MOWS_SOFT+=("$*")
	printf 'FAIL: %s: %s\n' "$MOWS_TEST" "$*" >&2
}
soft_done() {
	[ ${#_MOWS_SOFT[@]} -eq 0 ] && return 0
	fail "${#_MOWS_SOFT[@]} check(s) failed:$(printf '\n  %s' "${_MOWS_SOFT[@]}")"
}

skip() {
	printf 'SKIP: %s: %s\n' "$MOWS_TEST" "$*"
	exit 77
}

need_cmd() {
	local c
	for c; do command -v "$c" >/dev/null 2>&1 || skip "needs '$c', not installed (make deps installs it)"; done
}

# The interpreter itself, not a pyenv-style shim that costs a fork and exec per call.
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PYTHON=python3
py() { "$PYTHON" "$MOWS_IT/helpers.py" "$@"; }

# ---- cleanup ---------------------------------------------------------------------------

declare -a _MOWS_MOUNTS=()   # mountpoints we mounted or tried to
declare -a _MOWS_PIDS=()     # daemons we started or found
declare -a _MOWS_LOGS=()     # daemon logs, shown on failure
_MOWS_FAILMSG=""

# Whether this process is still running (a zombie is not).
pid_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Waits up to $2 seconds (default 10) for pid $1 to end. Returns 0 when it ended.
wait_pid_gone() {
	local pid=$1 end=$((SECONDS + ${2:-10}))
	while pid_alive "$pid"; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.05
	done
	return 0
}

# The /proc/mounts line whose mountpoint is $1 (first match), or nothing.
mount_line() { # MOUNTPOINT, compared with /proc/mounts' octal escapes (\040 for a space)
	local m=${1//\\/\\134}
	m=${m// /\\040}
	m=${m//$'\t'/\\011}
	m=${m//$'\n'/\\012}
	M=$m awk '$2 == ENVIRON["M"] { print; exit }' /proc/mounts
}

is_mounted() { [ -n "$(mount_line "$1")" ]; }

# Whether $1 is mounted by mows: fstype fuse.mows, or any source/fstype naming mows.
is_mows_mounted() {
	mount_line "$1" | awk '$1 ~ /mows/ || $3 ~ /mows/ { f = 1 } END { exit !f }'
}

mows_track_pid() { _MOWS_PIDS+=("$1"); }
mows_track_mount() { _MOWS_MOUNTS+=("$1"); }

_mows_cleanup() {
	local rc=$? m pid i trouble=0 log
	trap - EXIT TERM INT HUP
	set +e
	# Unmount newest first; a plain unmount lets the daemon exit by itself.
	for ((i = ${#_MOWS_MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${_MOWS_MOUNTS[i]}
		is_mounted "$m" && fusermount3 -u "$m" 2>/dev/null
	done
	for pid in "${_MOWS_PIDS[@]}"; do
		wait_pid_gone "$pid" 3 && continue
		kill -TERM "$pid" 2>/dev/null
		wait_pid_gone "$pid" 3 && continue
		echo "cleanup: daemon $pid ignored SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null
		wait_pid_gone "$pid" 3
	done
	for ((i = ${#_MOWS_MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${_MOWS_MOUNTS[i]}
		is_mounted "$m" || continue
		fusermount3 -uz "$m" 2>/dev/null
		is_mounted "$m" && { echo "cleanup: $m is still mounted" >&2; trouble=1; }
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ ${#_MOWS_LOGS[@]} -gt 0 ]; then
		for log in "${_MOWS_LOGS[@]}"; do
			[ -s "$log" ] || continue
			echo "---- last lines of daemon log $(basename "$log") ----" >&2
			tail -n 15 "$log" >&2
			if [ -n "${MOWS_ARTIFACTS:-}" ]; then
				mkdir -p "$MOWS_ARTIFACTS" && cp "$log" "$MOWS_ARTIFACTS/"
			fi
		done
		# Repeated so that it ends the output that run.sh shows.
		[ -n "$_MOWS_FAILMSG" ] && printf 'FAIL: %s: %s\n' "$MOWS_TEST" "$_MOWS_FAILMSG" >&2
	fi
	# A daemon that was killed leaves its cache tmpfs (cache/store.h) for the next to detach.
	if [ -n "${SCRATCH:-}" ]; then
		awk -v s="$SCRATCH/" '$1 == "mows-cache" && index($2, s) == 1 { print $2 }' \
			/proc/mounts | while read -r m; do umount -l "$m"; done
	fi
	# Never recurse into a mount: remove the scratch dir only when nothing is left there.
	if [ -n "${SCRATCH:-}" ] && [ -d "$SCRATCH" ]; then
		if grep -qF " $SCRATCH/" /proc/mounts; then
			echo "cleanup: mounts left under $SCRATCH; not removing it" >&2
			trouble=1
		else
			chmod -R u+w "$SCRATCH" 2>/dev/null
			rm -rf --one-file-system "$SCRATCH"
		fi
	fi
	[ "$rc" -eq 0 ] && [ "$trouble" -ne 0 ] && rc=1
	[ "$rc" -eq 0 ] && [ ${#_MOWS_SOFT[@]} -ne 0 ] && rc=1
	exit "$rc"
}

trap _mows_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

[ "$(id -u)" -eq 0 ] || [ -w /dev/fuse ] || skip "needs /dev/fuse (run as root)"
[ -c /dev/fuse ] || skip "needs /dev/fuse"
command -v fusermount3 >/dev/null || skip "needs fusermount3"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/mows.XXXXXX") || fail "cannot make a scratch dir"
SCRATCH=$(realpath "$SCRATCH")

for _b in "$MOWS_FUSE" "$MOWS_CTL" "$MOWS_CRC32"; do
	[ -x "$_b" ] || fail "$_b is not built (run 'make all')"
done
unset _b

# ---- mounting --------------------------------------------------------------------------

_MOWS_N=0

# mows_mount BACKING MNT [extra args...]: starts mows-fuse in the foreground, in the
# background of this shell, and returns once MNT is mounted (10 s deadline). An empty
# BACKING mounts without --backing (over MNT itself). The control socket is a new path, or
# $MOWS_MOUNT_SOCK when set. Sets MOWS_PID, MOWS_SOCK, MOWS_LOG.
mows_mount() {
	local backing=$1 mnt=$2 end rc
	shift 2
	mkdir -p "$mnt"
	mnt=$(realpath "$mnt")
	_MOWS_N=$((_MOWS_N + 1))
	MOWS_SOCK=${MOWS_MOUNT_SOCK:-$SCRATCH/ctl$_MOWS_N.sock}
	MOWS_LOG=$SCRATCH/daemon$_MOWS_N.log
	local args=(-f)
	[ -n "$backing" ] && args+=(--backing "$backing")
	args+=(--control-socket "$MOWS_SOCK" --log-level=debug "$@" "$mnt")
	echo "+ mows-fuse ${args[*]}" >"$MOWS_LOG"
	note "mows-fuse ${args[*]}"
	"$MOWS_FUSE" "${args[@]}" >>"$MOWS_LOG" 2>&1 </dev/null &
	MOWS_PID=$!
	mows_track_pid "$MOWS_PID"
	mows_track_mount "$mnt"
	_MOWS_LOGS+=("$MOWS_LOG")
	end=$((SECONDS + 10))
	until is_mows_mounted "$mnt"; do
		if ! pid_alive "$MOWS_PID"; then
			wait "$MOWS_PID"
			rc=$?
			fail "mows-fuse exited with status $rc before $mnt was mounted: $(tail -n 1 "$MOWS_LOG")"
		fi
		[ $SECONDS -ge $end ] && fail "$mnt not mounted by mows within 10 s (mount line: '$(mount_line "$mnt")')"
		sleep 0.05
	done
	# The control socket may appear just after the mount; give it a moment, no more.
	end=$((SECONDS + 5))
	while [ ! -S "$MOWS_SOCK" ] && [ $SECONDS -lt $end ] && pid_alive "$MOWS_PID"; do
		sleep 0.05
	done
}

# faultfs_mount SOURCE MNT RULES: mirrors SOURCE at MNT through test/bin/faultfs, which
# injects the read faults that the rules file RULES names (see test/faultfs.c; it is read
# again whenever it changes). Returns once mounted (10 s deadline). Sets FAULTFS_LOG, where
# faultfs logs every fault it injects. Unmounted by the cleanup, after the mows above it.
FAULTFS=$MOWS_ROOT/test/bin/faultfs
faultfs_mount() {
	local src=$1 mnt=$2 rules=$3 pid end
	[ -x "$FAULTFS" ] || fail "$FAULTFS is not built (run 'make all')"
	mkdir -p "$mnt"
	mnt=$(realpath "$mnt")
	FAULTFS_LOG=$(mktemp "$SCRATCH/faultfs.XXXXXX.log")
	note "faultfs --rules $rules $src $mnt"
	"$FAULTFS" --rules "$rules" "$src" "$mnt" -f >"$FAULTFS_LOG" 2>&1 </dev/null &
	pid=$!
	mows_track_pid "$pid"
	mows_track_mount "$mnt"
	_MOWS_LOGS+=("$FAULTFS_LOG")
	end=$((SECONDS + 10))
	until [ "$(mount_line "$mnt" | awk '{ print $3 }')" = fuse.faultfs ] ||
		[ "$(mount_line "$mnt" | awk '{ print $1 }')" = faultfs ]; do
		pid_alive "$pid" || fail "faultfs exited before $mnt was mounted: $(tail -n 3 "$FAULTFS_LOG")"
		[ $SECONDS -ge $end ] && fail "faultfs did not mount $mnt within 10 s"
		sleep 0.05
	done
}

# mows_umount MNT [PID]: fusermount3 -u, then waits (10 s) for the daemon to exit. Sets
# MOWS_EXIT to its exit status (only knowable for a daemon this shell started).
mows_umount() {
	local mnt pid=${2:-$MOWS_PID} out
	mnt=$(realpath "$1")
	out=$(fusermount3 -u "$mnt" 2>&1) || fail "fusermount3 -u $mnt failed: $out"
	is_mounted "$mnt" && fail "$mnt still mounted after fusermount3 -u"
	wait_pid_gone "$pid" 10 || fail "mows-fuse (pid $pid) still running 10 s after fusermount3 -u $mnt"
	MOWS_EXIT=
	wait "$pid" 2>/dev/null
	MOWS_EXIT=$?
}

# mowsctl against the latest mount's socket (or $MOWS_SOCK as set by the caller).
mows_ctl() { "$MOWS_CTL" -s "$MOWS_SOCK" "$@"; }

# mows_status_json FILE: writes `mowsctl status --json` to FILE and checks it is JSON.
mows_status_json() {
	local err
	mows_ctl status --json >"$1" 2>"$SCRATCH/ctl.err" ||
		fail "mowsctl -s $MOWS_SOCK status --json failed: $(cat "$SCRATCH/ctl.err")"
	err=$("$PYTHON" -m json.tool "$1" 2>&1 >/dev/null) ||
		fail "mowsctl status --json is not valid JSON ($err): $(head -c 500 "$1")"
}

# jget VAR FILE EXPR: sets VAR to a value from a status JSON file (see helpers.py json).
jget() {
	local _v
	_v=$(py json "$2" "$3" 2>&1) || fail "$_v"
	printf -v "$1" '%s' "$_v"
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

# ---- test data -------------------------------------------------------------------------

rand_file() { # PATH SIZE
	mkdir -p "$(dirname "$1")"
	head -c "$2" /dev/urandom >"$1" || fail "cannot write $1"
}

# mows_make_tree DIR: nested dirs, empty files, sizes around page and chunk boundaries,
# symlinks (file, dir, dangling) and a Hugging Face cache layout. Sets HF_SNAPSHOT to the
# snapshot dir relative to DIR.
mows_make_tree() {
	local d=$1 sha_m sha_c sha_t rev hf
	mkdir -p "$d"
	: >"$d/empty.bin"
	rand_file "$d/one.bin" 1
	rand_file "$d/page-1.bin" 4095
	rand_file "$d/page.bin" 4096
	rand_file "$d/chunk+1.bin" $((4 * MiB + 1))
	rand_file "$d/big.bin" $((9 * MiB + 7))
	rand_file "$d/sub/a/sibling.bin" 65537
	rand_file "$d/sub/a/b/c/shard.bin" $((6 * MiB + 11))
	printf 'deep text\n' >"$d/sub/a/b/c/deep.txt"
	mkdir -p "$d/sub/empty-dir" "$d/links"
	ln -s ../one.bin "$d/links/to-file"
	ln -s ../sub/a "$d/links/to-dir"
	ln -s ../does-not-exist "$d/links/dangling"

	hf=$d/hub/models--acme--tiny
	mkdir -p "$hf/blobs" "$hf/refs"
	rand_file "$SCRATCH/hf.model" $((3 * MiB + 5))
	printf '{"architectures": ["Tiny"], "hidden_size": 64}\n' >"$SCRATCH/hf.config"
	rand_file "$SCRATCH/hf.tok" 12345
	sha_m=$(sha256sum <"$SCRATCH/hf.model" | cut -d' ' -f1)
	sha_c=$(sha256sum <"$SCRATCH/hf.config" | cut -d' ' -f1)
	sha_t=$(sha256sum <"$SCRATCH/hf.tok" | cut -d' ' -f1)
	mv "$SCRATCH/hf.model" "$hf/blobs/$sha_m"
	mv "$SCRATCH/hf.config" "$hf/blobs/$sha_c"
	mv "$SCRATCH/hf.tok" "$hf/blobs/$sha_t"
	rev=$(printf '%s' "$sha_m" | sha1sum | cut -d' ' -f1)
	printf '%s' "$rev" >"$hf/refs/main"
	mkdir -p "$hf/snapshots/$rev/tok"
	ln -s "../../blobs/$sha_m" "$hf/snapshots/$rev/model.safetensors"
	ln -s "../../blobs/$sha_c" "$hf/snapshots/$rev/config.json"
	ln -s "../../../blobs/$sha_t" "$hf/snapshots/$rev/tok/tokenizer.json"
	HF_SNAPSHOT=hub/models--acme--tiny/snapshots/$rev
}

# mows_make_manifest DIR: DIR/crc32.txt written by mows-crc32, each entry checked against
# Python's zlib.crc32 so a wrong manifest is reported as such and not as a daemon bug.
mows_make_manifest() {
	local d=$1 out=$SCRATCH/mows-crc32.out crc rel want n=0
	rm -f "$d/crc32.txt"
	"$MOWS_CRC32" "$d" >"$out" 2>"$out.err" ||
		fail "$MOWS_CRC32 $d exited $?: $(cat "$out.err")"
	if [ ! -s "$d/crc32.txt" ]; then
		[ -s "$out" ] || fail "$MOWS_CRC32 $d wrote no $d/crc32.txt and printed nothing"
		cp "$out" "$d/crc32.txt"
	fi
	while read -r crc rel; do
		case $crc in '#'* | '') continue ;; esac
		want=$(py crc32 "$d/$rel") || fail "manifest lists '$rel', which cannot be read"
		[ "${crc,,}" = "$want" ] || fail "mows-crc32 says $rel has crc $crc, zlib says $want"
		n=$((n + 1))
	done <"$d/crc32.txt"
	[ $n -gt 0 ] || fail "mows-crc32 wrote an empty manifest for $d"
}

# manifest_crc VAR DIR REL: sets VAR to the manifest's CRC for REL, lower case.
manifest_crc() {
	local _c
	_c=$(awk -v r="$3" '$2 == r { c = $1 } END { print tolower(c) }' "$2/crc32.txt")
	[ -n "$_c" ] || fail "$2/crc32.txt has no entry for $3"
	printf -v "$1" '%s' "$_c"
}

# ---- assertions ------------------------------------------------------------------------

assert_eq() { # EXPECTED ACTUAL WHAT
	[ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}

assert_le() { # A B WHAT: integer A <= B
	[ "$1" -le "$2" ] || fail "$3: expected $1 <= $2"
}

assert_cmp() { # FILE1 FILE2
	local d
	d=$(py cmp "$1" "$2" 2>&1) || fail "$d"
}

assert_trees_equal() { # A B [--exclude REL]...
	local d
	d=$(py cmptree "$@" 2>&1) || fail "$d"
}

assert_mounted() { is_mows_mounted "$1" || fail "$1 is not a mows mount: '$(mount_line "$1")'"; }
assert_not_mounted() { is_mounted "$1" && fail "$1 is still mounted: '$(mount_line "$1")'"; return 0; }

# assert_fails_with TEXT WHAT -- CMD...: CMD must exit nonzero with TEXT in its stderr.
assert_fails_with() {
	local text=$1 what=$2 out rc
	shift 3
	out=$("$@" 2>&1 >/dev/null)
	rc=$?
	[ $rc -ne 0 ] || fail "$what: '$*' succeeded, expected failure with '$text'"
	[[ $out == *"$text"* ]] || fail "$what: '$*' failed (status $rc) but stderr lacks '$text': $out"
}

# assert_ok WHAT -- CMD...: CMD must succeed; its stderr is shown if not.
assert_ok() {
	local what=$1 out rc
	shift 2
	out=$("$@" 2>&1 >/dev/null)
	rc=$?
	[ $rc -eq 0 ] || fail "$what: '$*' exited $rc: $out"
}

# retry_until SECONDS CMD...: runs CMD every 0.2 s until it succeeds; 1 if it never did.
retry_until() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}
