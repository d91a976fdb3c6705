#!/usr/bin/env bash
# TLS on the peer port, in a simulated cluster of two nodes (tools/mows-cluster), both with
# the defaults (tls = on) and the cluster's secret_file:
#   a. the nodes share chunks over TLS 1.3 with the PSK: each log says so, and a cold read on
#      node1 gets the right bytes, some of them from node2;
#   b. a standard TLS 1.3 client (openssl s_client) given the PSK derived from the cluster's
#      secret as net/tls.h defines it (HKDF-SHA256, identity mows-psk-v1) completes a
#      handshake with node2: the derivation is as documented, and the positive control for c;
#   d. a plaintext peer speaking the old protocol with the right secret (what a node with
#      tls = off sends: test/integration/peerproto.py get) gets no AUTH_OK and no DATA, and
#      node2 logs that it does not speak TLS;
#   c. the same client as in b with a PSK derived from another secret is refused with an
#      alert (node2's log line for it is rate-limited after d's; check_tls pins its words);
#   e. a TLS client with a certificate of its own and no PSK is refused.
# timeout: 180
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need
need_cmd openssl

M=$SCRATCH/model
cluster_model "$M" 2 8
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"
cluster_up --nodes 2 --model "$M" \
	--mows-args "--max-memory=64M --chunk-size=1M $CLUSTER_PEER_ARGS"
cluster_wait_mesh 20 1 2
SECRET=$CLUSTER_STATE/secret
LOG2=$CLUSTER_STATE/node2.log

# ---- a. sharing over TLS ----
for i in 1 2; do
	grep -q "TLS 1.3 on every peer connection, authenticated by the shared secret" \
		"$CLUSTER_STATE/node$i.log" || fail "a: node$i's log does not say TLS is on"
done
cluster_read "$SCRATCH/a.json" 1 || fail "a: node1's reader failed: $(cat "$SCRATCH/a.json")"
cluster_check_sums "$WANT" 1
cluster_get from_peers 1 status 'j["sources"].get("peers", 0)'
[ "$from_peers" -gt 0 ] || fail "a: node1 got no bytes from node2 over TLS"
note "a: node1 read the model with $from_peers bytes from node2 over TLS"

# The PSK of net/tls.h for the secret in file $1, as hex.
psk_of() {
	openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt "key:$(cat "$1")" \
		-kdfopt salt:mows-tls-psk-v1 -kdfopt "info:mows peer TLS 1.3 external PSK" HKDF |
		tr -d ':\n'
}

# s_client from node1 to node2's peer port; output in $SCRATCH/s_client-$1.out.
s_client() { # NAME ARGS...
	local name=$1
	shift
	mows_cluster exec node1 --timeout 20 -- openssl s_client -connect 198.18.1.2:7070 \
		-tls1_3 -brief "$@" </dev/null >"$SCRATCH/s_client-$name.out" 2>&1
}

# ---- b. the documented PSK works with a standard client ----
s_client right -psk "$(psk_of "$SECRET")" -psk_identity mows-psk-v1 \
	-ciphersuites TLS_AES_128_GCM_SHA256 ||
	fail "b: openssl s_client with the cluster's PSK: $(cat "$SCRATCH/s_client-right.out")"
grep -q "Protocol version: TLSv1.3" "$SCRATCH/s_client-right.out" ||
	fail "b: no TLS 1.3 session: $(cat "$SCRATCH/s_client-right.out")"
note "b: openssl s_client with the PSK derived from the cluster's secret: TLS 1.3 handshake done"

wait_log() { # SECS PATTERN WHAT
	local end=$((SECONDS + $1))
	until grep -q "$2" "$LOG2"; do
		[ $SECONDS -ge $end ] && fail "$3: node2's log has no '$2' after $1 s"
		sleep 0.1
	done
}

# ---- d. a plaintext peer with the right secret (a node with tls = off) ----
REL=$(cd "$M" && find . -type f -printf '%P\n' | sort | head -n 1)
if mows_cluster exec node1 --timeout 30 -- "$PYTHON" "$MOWS_IT/peerproto.py" get \
	--addr 198.18.1.2:7070 --secret-file "$SECRET" --root /mnt/mows-backing --rel "$REL" \
	--chunk 0 --chunk-size $((1 << 20)) >"$SCRATCH/pp-get.out" 2>&1; then
	fail "d: a plaintext peer got a chunk from a TLS node: $(cat "$SCRATCH/pp-get.out")"
fi
grep -q "AUTH_OK\|DATA" "$SCRATCH/pp-get.out" &&
	fail "d: the plaintext peer got AUTH_OK or DATA: $(cat "$SCRATCH/pp-get.out")"
wait_log 5 "does not speak TLS" "d"
note "d: a plaintext peer with the right secret is refused before anything is said"

# ---- c. a wrong PSK ----
printf 'not the cluster secret' >"$SCRATCH/other.secret"
if s_client wrong -psk "$(psk_of "$SCRATCH/other.secret")" -psk_identity mows-psk-v1 \
	-ciphersuites TLS_AES_128_GCM_SHA256 &&
	grep -q "Protocol version: TLSv1.3" "$SCRATCH/s_client-wrong.out"; then
	fail "c: a client with another secret's PSK completed a handshake"
fi
# The node logs refusals once per 10 s (that was d's); the client sees the alert.
grep -q "alert" "$SCRATCH/s_client-wrong.out" ||
	fail "c: no TLS alert for the wrong PSK: $(cat "$SCRATCH/s_client-wrong.out")"
note "c: a wrong PSK is refused: $(grep -m1 -o '[a-z ]*alert[^:]*' "$SCRATCH/s_client-wrong.out")"

# ---- e. a certificate instead of the PSK ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=impostor -keyout "$SCRATCH/imp.key" -out "$SCRATCH/imp.pem" 2>/dev/null ||
	fail "e: cannot make a certificate"
if s_client cert -cert "$SCRATCH/imp.pem" -key "$SCRATCH/imp.key" &&
	grep -q "Protocol version: TLSv1.3" "$SCRATCH/s_client-cert.out"; then
	fail "e: a client with a certificate and no PSK completed a handshake"
fi
note "e: a certificate without the PSK is refused"

# Still serving the real peer after all that.
cluster_peers_up 1 2 || fail "node1 does not see node2 up at the end:$(_cluster_peers_text 1)"
note "pass"
