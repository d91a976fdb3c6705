# shellcheck shell=bash
# Sourced after lib.sh by tests that need an object-store backing: a local S3 server (s3rver
# from npm, through test/s3/s3server.js, on loopback) and Debian's s3fs mounting its bucket,
# the way ossfs or s3fs sit under mows in production. Both are stopped and unmounted by
# lib.sh's cleanup, even when the test fails.
#
#   s3_up SRC_DIR        starts the server, uploads SRC_DIR into the bucket through a writable
#                        s3fs mount, then mounts the bucket read-only on $S3_MNT
#   s3_requests [METHOD] requests the store has answered so far (of METHOD: GET, HEAD, ...)
#   s3_lists             LIST requests (bucket GETs with a prefix or delimiter) so far
#   s3_pause / s3_resume SIGSTOP / SIGCONT the server: a store that stops answering
#   s3_tmp_bytes         bytes of the deleted temporary files the read-only s3fs holds open
#                        (its copies of the objects open through it)
#
# Globals: S3_MNT (the read-only s3fs mount), S3_PID (the server), S3_LOG (one line per request).

S3_BUCKET=model
S3_NODE=${MOWS_NPM_DIR:-/var/cache/mows-npm}

command -v s3fs >/dev/null || fail "needs s3fs (Debian package s3fs); run make deps"
command -v node >/dev/null || fail "needs node (Node.js) for the local S3 server"
[ -d "$S3_NODE/node_modules/s3rver" ] || fail "needs the npm package s3rver in $S3_NODE; run make deps"

# A free loopback TCP port.
_s3_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# _s3_mount MNT OPTS: mounts the bucket with s3fs, waits (15 s) until it answers.
_s3_mount() {
	local mnt=$1 opts=$2 end
	mkdir -p "$mnt"
	mows_track_mount "$mnt"
	s3fs "$S3_BUCKET" "$mnt" -o "passwd_file=$SCRATCH/s3.passwd,url=http://127.0.0.1:$S3_PORT,use_path_request_style${opts:+,$opts}" \
		>>"$SCRATCH/s3fs.log" 2>&1 || fail "s3fs mount of $mnt failed: $(tail -n 3 "$SCRATCH/s3fs.log")"
	end=$((SECONDS + 15))
	until is_mounted "$mnt" && stat "$mnt" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && fail "s3fs did not mount $mnt within 15 s: $(tail -n 3 "$SCRATCH/s3fs.log")"
		sleep 0.1
	done
	# s3fs daemonizes: cleanup waits for (or ends) the process itself, not just the mount.
	local pid
	for pid in $(pgrep -f "^s3fs $S3_BUCKET $mnt "); do mows_track_pid "$pid"; done
}

# s3_server_start PORT [PREFIX...]: the S3 server on PORT, logging requests to $S3_LOG, run
# under PREFIX (e.g. nsenter into a storage namespace; S3_ADDRESS picks its address); waits
# until it listens and writes the s3fs password file. Sets S3_PID.
s3_server_start() {
	local port=$1 end
	shift
	S3_LOG=$SCRATCH/s3-requests.log
	: >"$S3_LOG"
	: >"$SCRATCH/s3server.out"
	mkdir -p "$SCRATCH/s3-data"
	"$@" node "$MOWS_ROOT/test/s3/s3server.js" "$SCRATCH/s3-data" "$port" "$S3_BUCKET" "$S3_LOG" \
		>"$SCRATCH/s3server.out" 2>&1 </dev/null &
	S3_PID=$!
	mows_track_pid "$S3_PID"
	end=$((SECONDS + 20))
	until grep -q '^listening' "$SCRATCH/s3server.out"; do
		pid_alive "$S3_PID" || fail "the S3 server exited: $(cat "$SCRATCH/s3server.out")"
		[ $SECONDS -ge $end ] && fail "the S3 server did not listen within 20 s"
		sleep 0.1
	done
	printf 'S3RVER:S3RVER\n' >"$SCRATCH/s3.passwd"
	chmod 600 "$SCRATCH/s3.passwd"
}

s3_up() {
	local src=$1
	S3_PORT=$(_s3_port)
	s3_server_start "$S3_PORT"
	_s3_mount "$SCRATCH/s3-upload" ""
	find "$src" -mindepth 1 -maxdepth 1 -exec cp -a {} "$SCRATCH/s3-upload/" \; ||
		fail "upload of $src into the bucket failed"
	fusermount3 -u "$SCRATCH/s3-upload" || fail "cannot unmount the upload mount"
	S3_MNT=$SCRATCH/s3
	# No stat cache in s3fs: every stat mows makes reaches the store, as it does in production
	# once the cache has expired, so the tests count what mows asks of the store.
	_s3_mount "$S3_MNT" "ro,max_stat_cache_size=0"
}

s3_requests() {
	if [ $# -eq 0 ]; then wc -l <"$S3_LOG"; else grep -c "^$1 " "$S3_LOG"; fi
}

s3_lists() { grep -cE "^GET /$S3_BUCKET/?\?.*(prefix=|delimiter=|list-type=)" "$S3_LOG"; }

s3_pause() { kill -STOP "$S3_PID"; }
s3_resume() { kill -CONT "$S3_PID"; }

s3_tmp_bytes() {
	local pid fd n=0
	pid=$(pgrep -f "^s3fs $S3_BUCKET $S3_MNT" | head -n 1)
	[ -n "$pid" ] || fail "no s3fs process for $S3_MNT"
	for fd in "/proc/$pid/fd/"*; do
		case $(readlink "$fd" 2>/dev/null) in
		*' (deleted)') n=$((n + $(stat -L -c %s "$fd" 2>/dev/null || echo 0))) ;;
		esac
	done
	echo "$n"
}
