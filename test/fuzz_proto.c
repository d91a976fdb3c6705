/*
 * libFuzzer target for net/proto.h: every decoder gets the input, both whole and as a
 * framed stream. Decoders must never read outside the input (the fuzzer copies it into an
 * exactly-sized buffer, so ASan sees any overread), and whatever they accept must be
 * self-consistent and survive a re-encode unchanged. Build and run with test/fuzz.sh.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() is how a fuzz target reports a broken invariant. */
#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void fuzz_hello(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_HELLO_MAX_LEN];
	struct proto_hello h;

	if (proto_hello_decode(p, len, &h))
		return;
	CHECK(proto_node_id_ok(h.node_id));
	/* The encoder always writes the uptime; the older form, without it, decodes as 0. */
	ssize_t n = proto_hello_encode(again, sizeof(again), &h);
	CHECK(n == (ssize_t)len || (n == (ssize_t)len + 8 && h.uptime_ms == 0));
	CHECK(memcmp(again, p, len) == 0);
}

static void fuzz_auth(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_AUTH_LEN];
	struct proto_auth a;

	if (proto_auth_decode(p, len, &a))
		return;
	CHECK(len == PROTO_AUTH_LEN);
	proto_auth_encode(again, &a);
	CHECK(memcmp(again, p, len) == 0);
}

static void fuzz_ping(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_PING_MAX_LEN];
	struct proto_ping pi;
	struct proto_gossip g;

	if (proto_ping_gossip_decode(p, len, &pi, &g))
		return;
	CHECK(len >= PROTO_PING_LEN && len <= PROTO_PING_MAX_LEN);
	if (len == PROTO_PING_LEN) {
		CHECK(proto_ping_decode(p, len, &pi) == 0);
		proto_ping_encode(again, &pi);
	} else {
		CHECK(proto_ping_gossip_encode(again, sizeof(again), &pi, &g) == (ssize_t)len);
	}
	CHECK(memcmp(again, p, len) == 0);
}

static void fuzz_get(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_GET_LEN];
	struct proto_get g;

	if (proto_get_decode(p, len, &g))
		return;
	CHECK(len == PROTO_GET_LEN && g.chunk_size && g.file_size);
	CHECK(g.chunk <= (g.file_size - 1) / g.chunk_size);
	proto_get_encode(again, &g);
	CHECK(memcmp(again, p, len) == 0);
}

static void fuzz_data(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_DATA_FIXED_LEN];
	struct proto_data d, f;
	uint32_t sum = 0;

	if (proto_data_decode(p, len, &d))
		return;
	CHECK(len == PROTO_DATA_FIXED_LEN + (size_t)d.length);
	CHECK(d.status >= 0 && (d.status == 0 || (d.length == 0 && d.crc32 == 0)));
	for (uint32_t i = 0; i < d.length; i++)	/* touch every byte it points at */
		sum += d.data[i];
	(void)sum;
	CHECK(proto_data_decode_fixed(p, (uint32_t)len, &f) == 0 && f.length == d.length);
	proto_data_encode(again, &d);
	CHECK(memcmp(again, p, PROTO_DATA_FIXED_LEN) == 0);
}

/* DATA_PIECE: an accepted piece stays inside its answer and re-encodes to the same bytes. */
static void fuzz_piece(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_PIECE_FIXED_LEN];
	struct proto_piece c, f;
	uint32_t sum = 0;

	if (proto_piece_decode(p, len, &c))
		return;
	CHECK(len == PROTO_PIECE_FIXED_LEN + (size_t)c.n);
	CHECK(c.offset <= c.length && c.n <= c.length - c.offset);
	CHECK(c.status >= 0 && (c.status == 0) == (c.n > 0));
	CHECK(c.status == 0 || c.crc32 == 0);
	CHECK((c.n == 0) == (c.data == NULL));
	for (uint32_t i = 0; i < c.n; i++)	/* touch every byte it points at */
		sum += c.data[i];
	(void)sum;
	CHECK(proto_piece_decode_fixed(p, (uint32_t)len, &f) == 0 && f.n == c.n && !f.data);
	proto_piece_encode(again, &c);
	CHECK(memcmp(again, p, PROTO_PIECE_FIXED_LEN) == 0);
}

/* PREFETCH and PREFETCH_STATUS: accepted payloads re-encode to the same bytes. */
static void fuzz_prefetch(uint8_t type, const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_PREFETCH_LEN];
	if (type == PROTO_PREFETCH) {
		struct proto_prefetch r;
		if (proto_prefetch_decode(p, len, &r))
			return;
		CHECK(len == PROTO_PREFETCH_LEN && r.run_id && r.chunk_size && !r.flags);
		proto_prefetch_encode(again, &r);
		CHECK(memcmp(again, p, len) == 0);
		return;
	}
	struct proto_prefetch_status st;
	if (proto_prefetch_status_decode(p, len, &st))
		return;
	CHECK(len == PROTO_PREFETCH_STATUS_LEN && st.done <= st.total && st.status >= 0);
	proto_prefetch_status_encode(again, &st);
	CHECK(memcmp(again, p, len) == 0);
}

/* META_GET and META: accepted payloads re-encode to the same bytes, pieces inside total. */
static void fuzz_meta(uint8_t type, const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_META_FIXED_LEN];
	if (type == PROTO_META_GET) {
		struct proto_meta_get g;
		if (proto_meta_get_decode(p, len, &g))
			return;
		CHECK(len == PROTO_META_GET_LEN && !(g.flags & ~PROTO_META_GET_FLAGS_KNOWN));
		proto_meta_get_encode(again, &g);
		CHECK(memcmp(again, p, len) == 0);
		return;
	}
	struct proto_meta m;
	if (proto_meta_decode(p, len, &m))
		return;
	CHECK(len == PROTO_META_FIXED_LEN + m.length && m.offset + m.length <= m.total);
	CHECK(m.total <= PROTO_META_TOTAL_MAX && (m.length == 0) == (m.data == NULL));
	proto_meta_encode(again, &m);
	CHECK(memcmp(again, p, PROTO_META_FIXED_LEN) == 0);
}

static void fuzz_ping_req(uint8_t type, const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_PING_REQ_MAX_LEN];
	struct proto_ping_req rq;
	struct proto_ping_req_ack ack;

	if (type == PROTO_PING_REQ) {
		if (proto_ping_req_decode(p, len, &rq))
			return;
		CHECK(proto_node_id_ok(rq.node_id));
		CHECK(proto_ping_req_encode(again, sizeof(again), &rq) == (ssize_t)len);
	} else {
		if (proto_ping_req_ack_decode(p, len, &ack))
			return;
		CHECK(len == PROTO_PING_REQ_ACK_LEN);
		proto_ping_req_ack_encode(again, &ack);
	}
	CHECK(memcmp(again, p, len) == 0);
}

static void fuzz_redirect(const uint8_t *p, size_t len)
{
	uint8_t again[PROTO_REDIRECT_MAX_LEN];
	struct proto_redirect r;

	if (proto_redirect_decode(p, len, &r))
		return;
	CHECK(proto_node_id_ok(r.node_id));
	CHECK(proto_redirect_encode(again, sizeof(again), &r) == (ssize_t)len);
	CHECK(memcmp(again, p, len) == 0);
}

static void fuzz_payload(uint8_t type, const uint8_t *p, size_t len)
{
	switch (type) {
	case PROTO_HELLO:
		fuzz_hello(p, len);
		break;
	case PROTO_AUTH:
		fuzz_auth(p, len);
		break;
	case PROTO_AUTH_OK:
	case PROTO_AUTH_FAIL:
		CHECK(proto_empty_decode(p, len) == (len ? -EPROTO : 0));
		break;
	case PROTO_PING:
	case PROTO_PONG:
		fuzz_ping(p, len);
		break;
	case PROTO_GET:
		fuzz_get(p, len);
		break;
	case PROTO_DATA:
		fuzz_data(p, len);
		break;
	case PROTO_DATA_PIECE:
		fuzz_piece(p, len);
		break;
	case PROTO_PREFETCH:
	case PROTO_PREFETCH_STATUS:
		fuzz_prefetch(type, p, len);
		break;
	case PROTO_META_GET:
	case PROTO_META:
		fuzz_meta(type, p, len);
		break;
	case PROTO_REDIRECT:
		fuzz_redirect(p, len);
		break;
	case PROTO_PING_REQ:
	case PROTO_PING_REQ_ACK:
		fuzz_ping_req(type, p, len);
		break;
	}
}

/* The input as a stream of frames, the way a connection reads it. */
static void fuzz_stream(const uint8_t *p, size_t len)
{
	struct proto_hdr h;

	while (len) {
		int rc = proto_hdr_decode(p, len, &h, 1u << 16);

		if (rc) {
			CHECK(rc == -EAGAIN || rc == -EPROTO || rc == -EMSGSIZE);
			CHECK((rc == -EAGAIN) == (len < PROTO_HDR_LEN));
			return;
		}
		CHECK(h.version == PROTO_VERSION && h.type >= 1 && h.type <= PROTO_TYPE_MAX);
		CHECK(h.flags == 0 && h.len <= 1u << 16);
		if (len - PROTO_HDR_LEN < h.len)
			return;
		fuzz_payload(h.type, p + PROTO_HDR_LEN, h.len);
		p += PROTO_HDR_LEN + h.len;
		len -= PROTO_HDR_LEN + h.len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	struct proto_data d;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fuzz_stream(copy, size);
	for (uint8_t t = 1; t <= PROTO_TYPE_MAX; t++)
		fuzz_payload(t, copy, size);
	if (size >= PROTO_DATA_FIXED_LEN + 4) {
		uint32_t plen;

		memcpy(&plen, copy + PROTO_DATA_FIXED_LEN, sizeof(plen));
		if (proto_data_decode_fixed(copy, plen, &d) == 0)
			CHECK(plen == PROTO_DATA_FIXED_LEN + (uint64_t)d.length && !d.data);
	}
	free(copy);
	return 0;
}
