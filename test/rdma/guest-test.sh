#!/bin/bash
# test/rdma/guest-test.sh: the RDMA tests, run as root inside the VM test/rdma/vm.sh boots
# (stdout is the host's results file). Needs: rdma_rxe loaded, rdma_pair, mows-fuse,
# mowsctl, fusermount3 and /dev/fuse.
#
#  1. a soft-RoCE device rxe0 on a dummy netdev with 169.254.77.1 (not lo: rdma_cm cannot
#     resolve routes through it);
#  2. rdma_pair self: net/rdma.c in one process (server and client contexts);
#  3. rdma_pair serve/fetch in two processes, chunks of 4 and 16 MiB;
#  4. rdma_pair survive: the server is SIGKILLed while a 32 MiB chunk is being read;
#  5. two mows-fuse daemons on 169.254.77.1:7071/7072 sharing one backing dir, files read
#     through node 2 so that chunks come from node 1 (by RDMA when the daemon has it), node
#     1 SIGKILLed in the middle of a bigger file, a node with the wrong secret, descriptors
#     over TLS with SHA-256 checked, and a node whose RDMA READs are tampered with.
# Each check prints "ok NAME ..." or "FAIL NAME: ..."; the last line is "N passed, N failed".
# Exit status: the number of failures (0 = all passed).
#
# Arguments (MOWS_RDMA_VM_ARGS on the host, comma-separated): sections to run, of self,
# files, pair, kill, hold, daemons; none = all. The daemons keep their cache in files (the
# default): RDMA serves and fills chunk regions of the cache store's files.
export PATH=/usr/bin LC_ALL=C
IP=169.254.77.1
PASSED=0 FAILED=0 SKIPPED=0
T0=$(cut -d' ' -f1 /proc/uptime)
SECTIONS=" ${*//,/ } "
want() { [ "$SECTIONS" = "  " ] || [[ $SECTIONS == *" $1 "* ]]; }

ok() { echo "ok $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $*"; SKIPPED=$((SKIPPED + 1)); }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

finish() {
	echo "guest tests took $(awk -v a="$T0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s, $SKIPPED skipped"
	echo "$PASSED passed, $FAILED failed"
	exit "$FAILED"
}

# tally FILE: counts the ok/FAIL lines a program printed (they are already on stdout).
tally() {
	local n
	n=$(grep -c '^ok ' "$1")
	PASSED=$((PASSED + n))
	n=$(grep -c '^FAIL ' "$1")
	FAILED=$((FAILED + n))
}

# ---- 1. the device ----------------------------------------------------------------------

setup_rxe() {
	ip link add rdma0 type dummy &&
		ip link set rdma0 mtu 1500 up &&
		ip addr add "$IP/24" dev rdma0 &&
		rdma link add rxe0 type rxe netdev rdma0 || return 1
	local i
	for i in $(seq 50); do
		rdma link show rxe0/1 2>/dev/null | grep -q 'state ACTIVE' && return 0
		sleep 0.1
	done
	return 1
}

if setup_rxe; then
	ok "rxe_device $(rdma link show rxe0/1)"
else
	fail "rxe_device: cannot create rxe0 on rdma0 ($IP)"
	rdma link show
	dmesg | tail -n 10
	finish
fi

# ---- 2. one process ---------------------------------------------------------------------

self_test() { # [PORT [TAG]]: TAG "files" runs it with the fake hosts' slots in store files
	local port=${1:-7471} tag=${2:-self}
	timeout -s KILL 240 rdma_pair self "$IP" "$port" >/tmp/self.log 2>&1
	local rc=$?
	[ "$tag" = self ] || sed -i "s/^ok /ok ${tag}_/; s/^FAIL /FAIL ${tag}_/" /tmp/self.log
	cat /tmp/self.log
	tally /tmp/self.log
	grep -q '^rdma_pair: .* passed' /tmp/self.log ||
		fail "rdma_pair_$tag: ended without a summary (status $rc)"
	[ $rc -eq 0 ] || grep -q '^FAIL ' /tmp/self.log || fail "rdma_pair_$tag: exit status $rc"
}
want self && self_test

# The same suite with the cache in files: no slab, a memory region per chunk, forgotten
# when the chunk is punched out (files_evict checks a refilled chunk is never read stale).
if want files; then
	RDMA_PAIR_FILES=1 self_test 7472 files
	grep -q '^ok files_files_evict' /tmp/self.log || fail "files_evict: did not run"
	grep -q '^ok files_files_lease_pins_region' /tmp/self.log ||
		fail "files_lease_pins_region: did not pass"
	timeout -s KILL 120 rdma_pair regbench >/tmp/regbench.log 2>&1
	cat /tmp/regbench.log
	tally /tmp/regbench.log
	grep -q '^regbench 262144 KiB' /tmp/regbench.log || fail "regbench: no result for 256 MiB"
fi

# ---- 3. two processes -------------------------------------------------------------------

# serve PORT CHUNK: starts a server in the background (SERVER_PID), waits for "ready".
serve() {
	: >/tmp/serve.log
	rdma_pair serve "$IP" "$1" "$2" >/tmp/serve.log 2>&1 &
	SERVER_PID=$!
	local i
	for i in $(seq 100); do
		grep -q '^ready' /tmp/serve.log && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat /tmp/serve.log
	return 1
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null
	local i
	for i in $(seq 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null
}

two_process() { # NAME PORT CHUNK COUNT
	if ! serve "$2" "$3"; then
		fail "$1: the server did not start"
		return
	fi
	timeout -s KILL 180 rdma_pair fetch "$IP" "$2" "$3" "$4" >/tmp/fetch.log 2>&1
	sed "s/^ok fetch/ok $1/; s/^FAIL fetch/FAIL $1/" /tmp/fetch.log | tee /tmp/fetch2.log
	tally /tmp/fetch2.log
	grep -Eq '^(ok|FAIL) ' /tmp/fetch2.log || fail "$1: rdma_pair fetch printed no result"
	stop_server
	cat /tmp/serve.log
}

if want pair; then
	two_process fetch_4MiB_x40 7481 4M 40
	two_process fetch_16MiB_x6 7482 16M 6
	RDMA_PAIR_FILES=1 two_process files_fetch_4MiB_x20 7485 4M 20
fi

# The server dies in the middle of a 32 MiB chunk (about a second of reading under TCG).
kill_test() {
	if ! serve 7483 32M; then
		fail "server_killed: the server did not start"
		return
	fi
	: >/tmp/survive.log
	timeout -s KILL 180 rdma_pair survive "$IP" 7483 32M >/tmp/survive.log 2>&1 &
	local cpid=$! i
	for i in $(seq 100); do
		grep -q '^fetching' /tmp/survive.log && break
		sleep 0.1
	done
	sleep 2.5
	kill -9 "$SERVER_PID"
	{ wait "$SERVER_PID"; } 2>/dev/null
	echo "(server killed at uptime $(uptime_s) s)"
	wait "$cpid"
	cat /tmp/survive.log
	tally /tmp/survive.log
	grep -q '^ok server_killed\|^FAIL server_killed' /tmp/survive.log ||
		fail "server_killed: rdma_pair survive printed no result"
}
want kill && kill_test

# A requester killed while it holds leases: the server unpins on the disconnect, long
# before the leases would expire (10 s).
client_killed() {
	if ! serve 7484 4M; then
		fail "client_killed: the server did not start"
		return
	fi
	rdma_pair hold "$IP" 7484 4M >/tmp/hold.log 2>&1 &
	local hpid=$! i
	for i in $(seq 100); do
		grep -q '^holding' /tmp/hold.log && break
		kill -0 "$hpid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$hpid"
	{ wait "$hpid"; } 2>/dev/null
	sleep 1.5
	stop_server
	cat /tmp/hold.log /tmp/serve.log
	if grep -q '^holding' /tmp/hold.log &&
		grep -Eq '2 leases granted, 0 active, 0 expired; ([0-9]+) pins, \1 unpins' /tmp/serve.log; then
		ok "client_killed its 2 leases were released on disconnect, none by expiry"
	else
		fail "client_killed: leases not released when the requester died"
	fi
}
want hold && client_killed

# ---- 5. two mows-fuse daemons -----------------------------------------------------------

DAEMON_RDMA=$(cat /etc/mows-daemon-rdma 2>/dev/null)
B=/tmp/backing
declare -A DPID=()

mounted() { grep -q " $1 fuse" /proc/mounts; }

# start_node N PORT SECRET_FILE PEERS: mows-fuse -f in the background on /mnt/nN
# (MAXMEM in the environment: its max_memory, 96M by default).
start_node() {
	local n=$1 port=$2 secret=$3 peers=$4 i
	mkdir -p "/mnt/n$n"
	mows-fuse -f --backing "$B" --control-socket "/run/n$n.sock" --log-level=debug \
		--node-id "n$n" --listen "$IP:$port" --peers "$peers" --secret-file "$secret" \
		--transport rdma --max-memory "${MAXMEM:-96M}" --chunk-size 1M --fill-threads 2 \
		--heartbeat 500ms --peer-timeout 2s --request-timeout 5s \
		"/mnt/n$n" >"/tmp/n$n.log" 2>&1 </dev/null &
	DPID[$n]=$!
	for i in $(seq 100); do
		mounted "/mnt/n$n" && [ -S "/run/n$n.sock" ] && return 0
		kill -0 "${DPID[$n]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "--- node $n did not start:"
	tail -n 20 "/tmp/n$n.log"
	return 1
}

stop_node() {
	local n=$1 i
	fusermount3 -u -z "/mnt/n$n" 2>/dev/null || umount -l "/mnt/n$n" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "${DPID[$n]}" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "${DPID[$n]}" 2>/dev/null
	wait "${DPID[$n]}" 2>/dev/null
}

peers_json() { mowsctl -s "/run/n$1.sock" --json peers 2>/dev/null; }

# rdma_num NODE KEY: a number from the "rdma" object of mowsctl peers --json, or empty.
rdma_num() {
	peers_json "$1" | grep -o '"rdma":{[^}]*}' | grep -o "\"$2\":[0-9]*" | cut -d: -f2
}

wait_up() { # NODE: until the node sees a peer up (20 s)
	local i
	for i in $(seq 200); do
		peers_json "$1" | grep -q '"state":"up"' && return 0
		sleep 0.1
	done
	return 1
}

daemon_tests() {
	mkdir -p "$B/model"
	dd if=/dev/urandom of="$B/model/small.bin" bs=1M count=6 2>/dev/null
	printf 'odd tail' >>"$B/model/small.bin"
	dd if=/dev/urandom of="$B/model/big.bin" bs=1M count=64 2>/dev/null
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/tmp/secret
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/tmp/other-secret
	chmod 600 /tmp/secret /tmp/other-secret
	local peers="$IP:7071,$IP:7072"

	if ! start_node 1 7071 /tmp/secret "$peers" || ! start_node 2 7072 /tmp/secret "$peers"; then
		fail "daemons_start: see the log above"
		return
	fi
	if wait_up 2 && wait_up 1; then
		ok "daemons_up nodes n1 and n2 see each other"
	else
		fail "daemons_up: no peer up after 20 s: $(peers_json 2)"
	fi

	if cmp "/mnt/n2/model/small.bin" "$B/model/small.bin"; then
		ok "read_through_n2 small.bin (6 MiB + 8 bytes) equals the backing"
	else
		fail "read_through_n2: small.bin differs from the backing"
	fi
	local j
	j=$(peers_json 2)
	echo "n2 peers: $j"
	if [ "$DAEMON_RDMA" = yes ]; then
		local bytes reads
		bytes=$(rdma_num 2 bytes_read)
		reads=$(rdma_num 2 reads_posted)
		if [ -n "$bytes" ] && [ "$bytes" -gt 0 ] && [ "${reads:-0}" -gt 0 ] &&
			grep -q '"transport":"rdma"' <<<"$j"; then
			ok "rdma_counters n2 read $bytes bytes in $reads RDMA READs from n1"
		else
			fail "rdma_counters: n2 reports no RDMA READ traffic (bytes_read '${bytes}', reads_posted '${reads}')"
		fi
	else
		fail "rdma_counters: nm found no rdma_ctx_new in mows-fuse (stripped, or peer.c does not call net/rdma.c), so RDMA traffic cannot be demanded"
	fi
	# The descriptors came over the TLS link, not the RDMA connection, and every chunk
	# read by RDMA was checked against the SHA-256 the holder sent inside TLS.
	if [ "$DAEMON_RDMA" = yes ]; then
		local descs checked bad computed refused
		descs=$(rdma_num 2 descs)
		checked=$(rdma_num 2 digests_checked)
		bad=$(rdma_num 2 digest_mismatches)
		computed=$(rdma_num 1 digests_computed)
		refused=$(rdma_num 1 msgs_refused)
		if [ "${descs:-0}" -gt 0 ] && [ "${checked:-0}" -gt 0 ] && [ "$bad" = 0 ] &&
			[ "${computed:-0}" -gt 0 ] && [ "$refused" = 0 ] &&
			grep -q 'TLS 1.3 on every peer connection' /tmp/n2.log; then
			ok "desc_over_tls n2 got $descs descriptors over its TLS link and checked $checked SHA-256 digests (0 mismatches); n1 computed $computed, and no message crossed an RDMA connection"
		else
			fail "desc_over_tls: n2 descs '$descs', digests_checked '$checked', mismatches '$bad'; n1 digests_computed '$computed', msgs_refused '$refused'"
		fi
	fi

	# A node with another secret: authentication fails, so it never gets a ticket, no RDMA
	# connection is accepted from it, and it still reads correct bytes from its backing.
	local in_before in_after
	in_before=$(rdma_num 1 conns_in)
	if start_node 3 7073 /tmp/other-secret "$IP:7071"; then
		sleep 2
		if cmp "/mnt/n3/model/small.bin" "$B/model/small.bin" &&
			! peers_json 3 | grep -q '"state":"up"'; then
			ok "wrong_secret n3 reads correct bytes from its backing and has no peer up"
		else
			fail "wrong_secret: n3 read wrong bytes, or counts a peer as up: $(peers_json 3)"
		fi
		in_after=$(rdma_num 1 conns_in)
		if [ "$DAEMON_RDMA" = yes ]; then
			if [ "${in_before:-x}" = "${in_after:-y}" ] && [ "$(rdma_num 3 conns_out)" = 0 ]; then
				ok "wrong_secret_no_rdma n1 accepted no RDMA connection from n3 (conns_in $in_after)"
			else
				fail "wrong_secret_no_rdma: n1 conns_in $in_before -> $in_after, n3 conns_out $(rdma_num 3 conns_out)"
			fi
		fi
		stop_node 3
	else
		fail "wrong_secret: node 3 did not start"
	fi

	# A fabric that rewrites RDMA payloads (MOWS_TEST_RDMA_CORRUPT=1 flips a byte of every
	# READ on n4): the digest check refuses each chunk, and n4 still reads correct bytes.
	if [ "$DAEMON_RDMA" = yes ]; then
		if MOWS_TEST_RDMA_CORRUPT=1 start_node 4 7074 /tmp/secret "$IP:7071"; then
			wait_up 4
			local ok4=no mism chk4
			cmp "/mnt/n4/model/small.bin" "$B/model/small.bin" && ok4=yes
			mism=$(rdma_num 4 digest_mismatches)
			chk4=$(rdma_num 4 digests_checked)
			if [ $ok4 = yes ] && [ "${mism:-0}" -gt 0 ] && [ "$chk4" = 0 ] &&
				grep -q 'does not match' /tmp/n4.log; then
				ok "tampered_rdma_refused n4 refused $mism tampered RDMA reads and read small.bin correctly"
			else
				fail "tampered_rdma_refused: bytes right: $ok4, mismatches '$mism', digests_checked '$chk4': $(peers_json 4)"
			fi
			stop_node 4
		else
			fail "tampered_rdma_refused: node 4 did not start"
		fi
	fi

	# tools/mows-peerbench against n1, over each transport: the tool users run on real NICs.
	# The VM's GB/s mean nothing; that it works and says which transport carried the data does.
	if command -v mows-peerbench >/dev/null; then
		local tr out
		for tr in rdma tcp; do
			out=$(timeout 60 mows-peerbench --peer "$IP:7071" --secret-file /tmp/secret \
				--backing "$B" --file model/small.bin --chunk-size 1M --transport "$tr" \
				--seconds 3 --inflight 2 2>&1)
			echo "peerbench $tr: $out"
			if [[ $out == "transport $tr: "* ]] && ! [[ $out == *" 0 chunks"* ]]; then
				ok "peerbench_$tr $out"
			else
				fail "peerbench_$tr: $out"
			fi
		done
	else
		skip "peerbench: mows-peerbench is not in this image"
	fi

	# The cache in files under eviction: n5 and n6 hold 10 chunks each, and n6 reads 24 MiB
	# of big.bin, about half of it (the chunks n5 owns) by RDMA from n5. Both evict all the
	# time: n5 chunks it just leased out, n6 the slots READs landed in. Every region must go
	# with its chunk (regions_forgotten) and no byte may be wrong.
	if [ "$DAEMON_RDMA" = yes ]; then
		local p56="$IP:7075,$IP:7076"
		if MAXMEM=10M start_node 5 7075 /tmp/secret "$p56" &&
			MAXMEM=10M start_node 6 7076 /tmp/secret "$p56" && wait_up 6 && wait_up 5; then
			local same=no f5 f6 g5 r6 m6 a5
			head -c $((24 << 20)) "$B/model/big.bin" >/tmp/big24.want
			timeout -s KILL 180 head -c $((24 << 20)) /mnt/n6/model/big.bin >/tmp/big24.got &&
				cmp -s /tmp/big24.got /tmp/big24.want && same=yes
			f5=$(rdma_num 5 regions_forgotten)
			a5=$(rdma_num 5 regions_active)
			g5=$(rdma_num 5 leases_granted)
			f6=$(rdma_num 6 regions_forgotten)
			r6=$(rdma_num 6 bytes_read)
			m6=$(rdma_num 6 digest_mismatches)
			if [ $same = yes ] && [ "${g5:-0}" -gt 8 ] && [ "${f5:-0}" -gt 0 ] &&
				[ "${a5:-99}" -le 10 ] && [ "${f6:-0}" -gt 0 ] && [ "${r6:-0}" -gt 0 ] &&
				[ "$m6" = 0 ]; then
				ok "files_evict_under_rdma 24 MiB through 10-chunk caches: right bytes; n5 leased $g5 chunks, forgot $f5 regions (holds $a5); n6 read $r6 bytes by RDMA and forgot $f6 regions, 0 digest mismatches"
			else
				fail "files_evict_under_rdma: bytes right: $same; n5 leases $g5, regions forgotten '$f5', active '$a5'; n6 bytes_read '$r6', forgotten '$f6', mismatches '$m6'"
				echo "n5: $(peers_json 5)"
				echo "n6: $(peers_json 6)"
			fi
		else
			fail "files_evict_under_rdma: nodes 5 and 6 did not start or see each other"
		fi
		stop_node 6
		stop_node 5
	fi

	# n1 dies in the middle of big.bin: n2's reads go on from the backing (or TCP) and
	# every byte is still right.
	rm -f /tmp/big.out
	timeout -s KILL 240 cat /mnt/n2/model/big.bin >/tmp/big.out 2>/tmp/big.err &
	local cat_pid=$! i size=0
	for i in $(seq 600); do
		size=$(stat -c %s /tmp/big.out 2>/dev/null || echo 0)
		[ "$size" -ge $((12 << 20)) ] && break
		kill -0 "$cat_pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -9 "${DPID[1]}"
	{ wait "${DPID[1]}"; } 2>/dev/null
	echo "(n1 killed with $size bytes of big.bin read, at uptime $(uptime_s) s)"
	local t=$SECONDS
	wait "$cat_pid"
	local crc=$?
	if [ $crc -eq 0 ] && cmp /tmp/big.out "$B/model/big.bin"; then
		ok "n1_killed big.bin (64 MiB) read through n2 is correct; $((SECONDS - t)) s after the kill"
	else
		fail "n1_killed: cat exited $crc ($(cat /tmp/big.err)), or the bytes differ"
	fi
	if [ "$size" -ge $((64 << 20)) ]; then
		fail "n1_killed_midway: big.bin was already read when n1 was killed"
	fi
	echo "n2 peers after: $(peers_json 2)"
	stop_node 2
	stop_node 1
}

if ! want daemons; then
	:
elif [ -c /dev/fuse ] && command -v mows-fuse >/dev/null; then
	daemon_tests
	for n in 1 2 3 4 5 6; do
		[ -f "/tmp/n$n.log" ] || continue
		if [ "$FAILED" -gt 0 ]; then
			echo "--- last lines of node $n's log:"
			tail -n 15 "/tmp/n$n.log"
		fi
	done
else
	fail "daemons: /dev/fuse or mows-fuse missing in the VM"
fi

finish
