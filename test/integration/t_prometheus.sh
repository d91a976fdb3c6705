#!/usr/bin/env bash
# A real Prometheus (Debian's package) scrapes mows's /metrics every second while a model is
# read through the mount; the values it stored agree with `mowsctl status --json`, every
# metric family the README lists is there, and the series span the read (they started at 0).
# timeout: 150
. "$(dirname "$0")/lib.sh"

command -v prometheus >/dev/null || fail "needs prometheus (make deps installs Debian's package)"
command -v curl >/dev/null || fail "needs curl (make deps installs it)"

B=$SCRATCH/backing
M=$SCRATCH/mnt
PROM_DIR=$SCRATCH/prometheus
PROM_PID=

# Prometheus is ours to stop, before lib.sh unmounts and removes the scratch dir.
_prom_cleanup() {
	local rc=$?
	if [ -n "$PROM_PID" ]; then
		kill -TERM "$PROM_PID" 2>/dev/null
		wait_pid_gone "$PROM_PID" 10 || kill -KILL "$PROM_PID" 2>/dev/null
		if [ "$rc" -ne 0 ] && [ -s "$PROM_DIR.log" ]; then
			echo "---- last lines of the prometheus log ----" >&2
			tail -n 10 "$PROM_DIR.log" >&2
		fi
	fi
	rm -rf "$PROM_DIR"
	(exit "$rc")
	_mows_cleanup
}
trap _prom_cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The model: a few shards around chunk boundaries.
rand_file "$B/model-00001.safetensors" $((12 * MiB + 17))
rand_file "$B/model-00002.safetensors" $((9 * MiB))
rand_file "$B/config.json" 513
model_bytes=$(du -cb "$B"/* | tail -n 1 | cut -f1)

# Bad metrics_listen values stop start-up with status 2 and say what to fix.
mkdir -p "$SCRATCH/never"
mows_track_mount "$SCRATCH/never"
assert_fails_with "metrics_listen 'localhost': expected HOST:PORT" "metrics_listen without a port" -- \
	"$MOWS_FUSE" -f --backing "$B" --metrics-listen=localhost "$SCRATCH/never"
"$PYTHON" -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(30)' >"$SCRATCH/busy.port" &
busy_pid=$!
retry_until 10 test -s "$SCRATCH/busy.port" || fail "cannot hold a port for the busy-port case"
busy=$(cat "$SCRATCH/busy.port")
out=$("$MOWS_FUSE" -f --backing "$B" --max-memory=64M --metrics-listen="127.0.0.1:$busy" "$SCRATCH/never" 2>&1)
rc=$?
kill "$busy_pid" 2>/dev/null
assert_eq 2 "$rc" "exit status with metrics_listen on a port in use (output: $out)"
[[ $out == *"metrics_listen '127.0.0.1:$busy': Address already in use"* ]] ||
	fail "metrics_listen on a port in use: message does not say so: $out"
assert_not_mounted "$SCRATCH/never"

mport=$(free_port)
# passthrough = off: this test counts the reads the daemon serves; passthrough reads bypass it.
mows_mount "$B" "$M" --chunk-size=1M --max-memory=64M --metrics-listen="127.0.0.1:$mport" --passthrough=off

pport=$(free_port)
mkdir -p "$PROM_DIR"
cat >"$PROM_DIR.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: mows
    static_configs:
      - targets: ['127.0.0.1:$mport']
YML
prometheus --config.file="$PROM_DIR.yml" --storage.tsdb.path="$PROM_DIR" \
	--web.listen-address="127.0.0.1:$pport" --log.level=warn >"$PROM_DIR.log" 2>&1 </dev/null &
PROM_PID=$!
PROM=http://127.0.0.1:$pport
note "prometheus pid $PROM_PID on $PROM scraping 127.0.0.1:$mport every 1 s"

cat >"$SCRATCH/promq.py" <<'PY'
import json, sys, urllib.parse, urllib.request
def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        j = json.load(r)
    if j.get("status") != "success":
        sys.exit("prometheus query %r: %s" % (expr, j))
    return j["data"]["result"]
base, cmd = sys.argv[1], sys.argv[2]
if cmd == "value":   # one number, or "none" when the query has no result
    res = query(base, sys.argv[3])
    print(res[0]["value"][1] if res else "none")
elif cmd == "names": # every mows_ metric name Prometheus holds, one a line
    for r in query(base, 'count by (__name__) ({__name__=~"mows_.+"})'):
        print(r["metric"]["__name__"])
PY
pq() { "$PYTHON" "$SCRATCH/promq.py" "$PROM" "$@"; }
# pval VAR EXPR: the value of EXPR now, as an integer when it is one.
pval() {
	local _v
	_v=$(pq value "$2" 2>&1) || fail "prometheus query '$2': $_v"
	[[ $_v == *.* ]] && [[ ${_v#*.} =~ ^0*$ ]] && _v=${_v%%.*}
	printf -v "$1" '%s' "$_v"
}

# Ready, and a first scrape in, before anything is read.
retry_until 60 curl -fsS -o /dev/null "$PROM/-/ready" ||
	fail "prometheus not ready on $PROM within 60 s"
up_now() { pval v 'up{job="mows"}'; [ "$v" = 1 ]; }
retry_until 20 up_now || fail "prometheus has not scraped 127.0.0.1:$mport within 20 s (up = $v)"
pval v 'mows_read_bytes_total{source="storage"}'
assert_eq 0 "$v" "mows_read_bytes_total{source=\"storage\"} before any read"

# Read the model through mows, checking every byte.
for f in "$B"/*; do
	assert_cmp "$f" "$M/${f##*/}"
done
drop_caches
for f in "$B"/*; do
	assert_cmp "$f" "$M/${f##*/}"
done

# Wait until Prometheus holds the values mowsctl reports (fills settle, then a scrape).
st=$SCRATCH/st.json
declare -A want
compare() {
	local k v bad=0
	mows_status_json "$st"
	jget want[read] "$st" 'j["bytes_read"]'
	jget want[fills] "$st" 'j["fills"]'
	jget want[fill_errors] "$st" 'j["fill_errors"]'
	jget want[evictions] "$st" 'j["evictions"]'
	jget want[hits] "$st" 'j["hits"]'
	jget want[misses] "$st" 'j["misses"]'
	jget want[used] "$st" 'j["memory"]["used"]'
	jget want[max] "$st" 'j["memory"]["max"]'
	jget want[cached] "$st" 'j["chunks"]["cached"]'
	jget want[storage] "$st" 'j["sources"]["backing"]'
	declare -gA got=()
	pval got[read] 'sum(mows_read_bytes_total)'
	pval got[fills] 'mows_fills_total'
	pval got[fill_errors] 'mows_fill_errors_total'
	pval got[evictions] 'mows_evictions_total'
	pval got[hits] 'mows_cache_hits_total'
	pval got[misses] 'mows_cache_misses_total'
	pval got[used] 'mows_cache_used_bytes'
	pval got[max] 'mows_cache_capacity_bytes'
	pval got[cached] 'mows_cache_chunks{state="cached"}'
	pval got[storage] 'mows_fill_bytes_total{source="storage"}'
	for k in "${!want[@]}"; do
		[ "${want[$k]}" = "${got[$k]}" ] || bad=1
	done
	return $bad
}
if ! retry_until 20 compare; then
	for k in "${!want[@]}"; do
		[ "${want[$k]}" = "${got[$k]}" ] ||
			soft_fail "$k: mowsctl status --json says ${want[$k]}, prometheus holds ${got[$k]}"
	done
	soft_done
fi
note "prometheus agrees with mowsctl: read ${want[read]} bytes, ${want[fills]} fills, ${want[used]} bytes used"

# The model crossed from storage once, and was read twice.
assert_eq "$model_bytes" "${want[storage]}" "bytes filled from storage for a $model_bytes-byte model"
assert_eq $((2 * model_bytes)) "${want[read]}" "bytes read (the model twice)"

# Histograms counted what happened.
pval v 'mows_fill_duration_seconds_count'
assert_eq "${want[fills]}" "$v" "mows_fill_duration_seconds_count (one sample a fill)"
pval v 'mows_fill_duration_seconds_bucket{le="+Inf"}'
assert_eq "${want[fills]}" "$v" "mows_fill_duration_seconds_bucket{le=\"+Inf\"}"
pval v 'mows_read_duration_seconds_count'
[ "$v" != none ] && [ "$v" -gt 0 ] || fail "mows_read_duration_seconds_count is '$v' after reading"
pval v 'histogram_quantile(0.99, mows_read_duration_seconds_bucket) > 0'
[ "$v" != none ] || fail "no 99th percentile of FUSE read latency"
pval v 'mows_build_info'
assert_eq 1 "$v" "mows_build_info"

# The series span the read: Prometheus saw them grow from 0.
pval v 'min_over_time(mows_fills_total[5m])'
assert_eq 0 "$v" "lowest mows_fills_total Prometheus stored"
pval v 'max_over_time(sum(mows_read_bytes_total)[5m:1s])'
assert_eq "${want[read]}" "$v" "highest bytes read Prometheus stored"

# Every metric family the README lists was scraped.
names=$(pq names) || fail "prometheus: cannot list mows_ metric names: $names"
for n in mows_build_info mows_read_bytes_total mows_fill_bytes_total mows_cache_used_bytes \
	mows_cache_capacity_bytes mows_cache_chunk_size_bytes mows_cache_chunks \
	mows_cache_hits_total mows_cache_misses_total mows_fills_total mows_fill_errors_total \
	mows_evictions_total mows_crc_mismatches_total mows_peers mows_peer_bytes_total \
	mows_peer_errors_total mows_peers_quarantined mows_peer_quarantines_total \
	mows_fill_duration_seconds_bucket \
	mows_fill_duration_seconds_sum mows_fill_duration_seconds_count \
	mows_read_duration_seconds_bucket mows_read_duration_seconds_sum \
	mows_read_duration_seconds_count; do
	grep -qx "$n" <<<"$names" || soft_fail "prometheus has no series named $n"
done
soft_done

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
