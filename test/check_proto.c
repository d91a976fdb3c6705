/*
 * Pins net/proto.h: the exact bytes of each frame, round trips, and rejection of every
 * truncated, oversized, inconsistent or garbage input. The file_key known answers were
 * computed with a separate Python implementation of the definition in proto.h.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/proto.h"

#define BIG_MAX (64u << 20)
#define GARBAGE_MAX 256

static const uint8_t nonce_a[PROTO_NONCE_LEN] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
};

static uint32_t xorshift32(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Decodes a payload of @type with the matching decoder, as a receiver would. */
static int decode_payload(uint8_t type, const void *p, size_t len)
{
	struct proto_hello h;
	struct proto_auth a;
	struct proto_ping pi;
	struct proto_get g;
	struct proto_data d;
	struct proto_prefetch pf;
	struct proto_prefetch_status ps;

	switch (type) {
	case PROTO_HELLO:
		return proto_hello_decode(p, len, &h);
	case PROTO_AUTH:
		return proto_auth_decode(p, len, &a);
	case PROTO_AUTH_OK:
	case PROTO_AUTH_FAIL:
		return proto_empty_decode(p, len);
	case PROTO_PING:
	case PROTO_PONG:
		return proto_ping_decode(p, len, &pi);
	case PROTO_GET:
		return proto_get_decode(p, len, &g);
	case PROTO_DATA:
		return proto_data_decode(p, len, &d);
	case PROTO_PREFETCH:
		return proto_prefetch_decode(p, len, &pf);
	case PROTO_PREFETCH_STATUS:
		return proto_prefetch_status_decode(p, len, &ps);
	default:
		return -EPROTO;
	}
}

/* A receiver over a byte buffer: -EAGAIN until the whole frame is there, then its verdict. */
static int decode_frame(const uint8_t *buf, size_t len, uint32_t max_payload)
{
	struct proto_hdr hdr;
	int rc = proto_hdr_decode(buf, len, &hdr, max_payload);

	if (rc)
		return rc;
	if (len - PROTO_HDR_LEN < hdr.len)
		return -EAGAIN;
	return decode_payload(hdr.type, buf + PROTO_HDR_LEN, hdr.len);
}

/* Every prefix of a valid frame is incomplete, every payload prefix is refused, and one
 * trailing byte in the payload is refused. */
static void check_truncations(const uint8_t *frame, size_t len)
{
	struct proto_hdr hdr;
	uint8_t *p;

	ck_assert_int_eq(decode_frame(frame, len, BIG_MAX), 0);
	ck_assert_int_eq(proto_hdr_decode(frame, len, &hdr, BIG_MAX), 0);
	ck_assert_uint_eq(hdr.len, len - PROTO_HDR_LEN);
	for (size_t k = 0; k < len; k++) {
		/* Exact-size copies so that ASan catches any read past the prefix. */
		p = malloc(k ? k : 1);
		ck_assert_ptr_nonnull(p);
		memcpy(p, frame, k);
		ck_assert_int_eq(decode_frame(p, k, BIG_MAX), -EAGAIN);
		/* A HELLO without its trailing uptime is the older form, and valid. */
		bool legacy = hdr.type == PROTO_HELLO && k + 8 == len;
		if (k >= PROTO_HDR_LEN && !legacy)
			ck_assert_int_eq(decode_payload(hdr.type, p + PROTO_HDR_LEN,
							k - PROTO_HDR_LEN), -EPROTO);
		free(p);
	}
	p = malloc(len + 1);
	ck_assert_ptr_nonnull(p);
	memcpy(p, frame, len);
	p[len] = 0;
	ck_assert_int_eq(decode_payload(hdr.type, p + PROTO_HDR_LEN, hdr.len + 1), -EPROTO);
	free(p);
}

static size_t frame_hello(uint8_t *buf, const struct proto_hello *h)
{
	ssize_t n = proto_hello_encode(buf + PROTO_HDR_LEN, PROTO_HELLO_MAX_LEN, h);

	ck_assert_int_gt(n, 0);
	proto_hdr_encode(buf, PROTO_HELLO, 0, (uint32_t)n, 0);
	return PROTO_HDR_LEN + (size_t)n;
}

static struct proto_hello sample_hello(const char *id)
{
	struct proto_hello h = { .version = 1, .caps = PROTO_CAP_RDMA, .listen_port = 7070 };

	memcpy(h.nonce, nonce_a, sizeof(h.nonce));
	strcpy(h.node_id, id);
	return h;
}

static struct proto_get sample_get(void)
{
	return (struct proto_get){
		.file_key = 0x0102030405060708ull,
		.file_size = 10ull << 30,
		.mtime_ns = -1234567890123ll,
		.chunk = 2559,
		.chunk_size = 4u << 20,
		.flags = PROTO_GET_FILL,
	};
}

START_TEST(test_hdr_bytes_and_round_trip)
{
	static const uint8_t want[PROTO_HDR_LEN] = {
		'M', 'O', 'W', 'S', 0x01, PROTO_GET, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x28, 0xde, 0xad, 0xbe, 0xef,
	};
	uint8_t buf[PROTO_HDR_LEN];
	struct proto_hdr h;

	proto_hdr_encode(buf, PROTO_GET, 0, PROTO_GET_LEN, 0xdeadbeef);
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, BIG_MAX), 0);
	ck_assert_uint_eq(h.version, 1);
	ck_assert_uint_eq(h.type, PROTO_GET);
	ck_assert_uint_eq(h.flags, 0);
	ck_assert_uint_eq(h.len, 40);
	ck_assert_uint_eq(h.req_id, 0xdeadbeef);
	for (size_t k = 0; k < PROTO_HDR_LEN; k++)
		ck_assert_int_eq(proto_hdr_decode(buf, k, &h, BIG_MAX), -EAGAIN);
	/* Extra bytes after the header are the payload's business, not the header's. */
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, PROTO_GET_LEN), 0);
}
END_TEST

START_TEST(test_hdr_every_type)
{
	static const struct { uint8_t type; uint32_t len; } ok[] = {
		{ PROTO_HELLO, 40 }, { PROTO_HELLO, 111 }, { PROTO_AUTH, 33 },
		{ PROTO_AUTH_OK, 0 }, { PROTO_AUTH_FAIL, 0 }, { PROTO_PING, 8 }, { PROTO_PONG, 8 },
		{ PROTO_GET, 40 }, { PROTO_DATA, 12 }, { PROTO_DATA, 12 + (4u << 20) },
		{ PROTO_RDMA_DESC, 0 }, { PROTO_RDMA_DESC, PROTO_RDMA_TICKET_LEN },
		{ PROTO_PREFETCH, 48 }, { PROTO_PREFETCH_STATUS, 24 },
		{ PROTO_RDMA_DESC, 100 }, { PROTO_RDMA_DESC, PROTO_RDMA_MSG_MAX },
		{ PROTO_DATA_PIECE, 16 }, { PROTO_DATA_PIECE, 16 + (4u << 20) },
	};
	static const struct { uint8_t type; uint32_t len; } bad[] = {
		{ PROTO_HELLO, 0 }, { PROTO_HELLO, 39 }, { PROTO_HELLO, 112 }, { PROTO_AUTH, 32 },
		{ PROTO_AUTH, 34 }, { PROTO_AUTH_OK, 1 }, { PROTO_AUTH_FAIL, 1 }, { PROTO_PING, 7 },
		{ PROTO_PONG, PROTO_PING_MAX_LEN + 1 }, { PROTO_GET, 39 }, { PROTO_GET, 41 }, { PROTO_DATA, 11 },
		{ PROTO_DATA, 0 }, { PROTO_RDMA_DESC, PROTO_RDMA_MSG_MAX + 1 },
		{ PROTO_PREFETCH, 0 }, { PROTO_PREFETCH, 47 },
		{ PROTO_PREFETCH, 49 }, { PROTO_PREFETCH_STATUS, 23 }, { PROTO_PREFETCH_STATUS, 25 },
		{ PROTO_DATA_PIECE, 0 }, { PROTO_DATA_PIECE, 15 },
	};
	uint8_t buf[PROTO_HDR_LEN];
	struct proto_hdr h;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		proto_hdr_encode(buf, ok[i].type, 0, ok[i].len, (uint32_t)i);
		ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, BIG_MAX), 0);
		ck_assert_uint_eq(h.type, ok[i].type);
		ck_assert_uint_eq(h.len, ok[i].len);
		ck_assert_uint_eq(h.req_id, i);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		proto_hdr_encode(buf, bad[i].type, 0, bad[i].len, 0);
		ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, BIG_MAX), -EPROTO);
	}
	for (unsigned t = 1; t <= PROTO_TYPE_MAX; t++)
		ck_assert_str_ne(proto_type_name((uint8_t)t), "?");
	ck_assert_str_eq(proto_type_name(PROTO_DATA), "DATA");
	ck_assert_str_eq(proto_type_name(0), "?");
	ck_assert_str_eq(proto_type_name(PROTO_TYPE_MAX + 1), "?");
	ck_assert_str_eq(proto_type_name(255), "?");
}
END_TEST

START_TEST(test_hdr_bad_magic_version_type_flags)
{
	uint8_t buf[PROTO_HDR_LEN], bad[PROTO_HDR_LEN];
	struct proto_hdr h;

	proto_hdr_encode(buf, PROTO_PING, 0, PROTO_PING_LEN, 1);
	for (int i = 0; i < 4; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, buf, sizeof(buf));
			bad[i] ^= (uint8_t)(1u << bit);
			ck_assert_int_eq(proto_hdr_decode(bad, sizeof(bad), &h, BIG_MAX), -EPROTO);
		}
	}
	for (unsigned v = 0; v < 256; v++) {
		memcpy(bad, buf, sizeof(buf));
		bad[4] = (uint8_t)v;
		ck_assert_int_eq(proto_hdr_decode(bad, sizeof(bad), &h, BIG_MAX),
				 v == PROTO_VERSION ? 0 : -EPROTO);
	}
	for (unsigned t = 0; t < 256; t++) {
		if (t >= 1 && t <= PROTO_TYPE_MAX)
			continue;
		proto_hdr_encode(bad, (uint8_t)t, 0, 0, 1);
		ck_assert_int_eq(proto_hdr_decode(bad, sizeof(bad), &h, BIG_MAX), -EPROTO);
	}
	for (int bit = 0; bit < 16; bit++) {
		proto_hdr_encode(bad, PROTO_PING, (uint16_t)(1u << bit), PROTO_PING_LEN, 1);
		ck_assert_int_eq(proto_hdr_decode(bad, sizeof(bad), &h, BIG_MAX), -EPROTO);
	}
}
END_TEST

START_TEST(test_hdr_oversized)
{
	uint8_t buf[PROTO_HDR_LEN];
	struct proto_hdr h;

	proto_hdr_encode(buf, PROTO_DATA, 0, 1000, 7);
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, 1000), 0);
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, 999), -EMSGSIZE);
	ck_assert_uint_eq(h.len, 1000);
	ck_assert_uint_eq(h.req_id, 7);
	proto_hdr_encode(buf, PROTO_DATA, 0, UINT32_MAX, 7);
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, BIG_MAX), -EMSGSIZE);
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, UINT32_MAX), 0);
	/* Before authentication only a HELLO's worth of payload is accepted. */
	proto_hdr_encode(buf, PROTO_HELLO, 0, PROTO_HELLO_MAX_LEN, 0);
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, PROTO_PREAUTH_MAX_PAYLOAD), 0);
	proto_hdr_encode(buf, PROTO_DATA, 0, 12 + (4u << 20), 0);
	ck_assert_int_eq(proto_hdr_decode(buf, sizeof(buf), &h, PROTO_PREAUTH_MAX_PAYLOAD),
			 -EMSGSIZE);
}
END_TEST

START_TEST(test_rdma_ticket_round_trip)
{
	struct proto_rdma_ticket in = { .port = 7071 }, out;
	uint8_t buf[PROTO_RDMA_TICKET_LEN];

	for (unsigned i = 0; i < sizeof(in.ticket); i++)
		in.ticket[i] = (uint8_t)(i * 7 + 1);
	proto_rdma_ticket_encode(buf, &in);
	ck_assert_uint_eq(buf[0], 7071 >> 8); /* big-endian port */
	ck_assert_uint_eq(buf[1], 7071 & 0xff);
	ck_assert_int_eq(proto_rdma_ticket_decode(buf, sizeof(buf), &out), 0);
	ck_assert_uint_eq(out.port, 7071);
	ck_assert_mem_eq(out.ticket, in.ticket, sizeof(in.ticket));
	ck_assert_int_eq(proto_rdma_ticket_decode(buf, sizeof(buf) - 1, &out), -EPROTO);
	ck_assert_int_eq(proto_rdma_ticket_decode(buf, 0, &out), -EPROTO);
}
END_TEST

START_TEST(test_hello_round_trip)
{
	static const uint8_t want_fixed[] = {
		0x00, 0x01, 0x00, 0x01,
		0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
		0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
		0x1b, 0x9e, 0x06, 'n', 'o', 'd', 'e', '-', '1',
		0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, /* uptime_ms */
	};
	char id64[PROTO_NODE_ID_MAX + 1];
	const char *ids[] = { "x", "node-1", "gpu07.rack3:9000", "~!@#$%^&*()_+{}|:\"<>?", id64 };
	uint8_t buf[PROTO_HDR_LEN + PROTO_HELLO_MAX_LEN];
	struct proto_hello in, out;
	size_t len;

	memset(id64, 'z', PROTO_NODE_ID_MAX);
	id64[PROTO_NODE_ID_MAX] = '\0';
	in = sample_hello("node-1");
	in.uptime_ms = 0x0102030405ull;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), (ssize_t)sizeof(want_fixed));
	ck_assert_mem_eq(buf, want_fixed, sizeof(want_fixed));
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		in = sample_hello(ids[i]);
		in.version = (uint16_t)(1 + i);
		in.caps = (uint16_t)(0xffff - i);
		in.listen_port = (uint16_t)i;
		in.uptime_ms = 1000 * i;
		len = frame_hello(buf, &in);
		ck_assert_uint_eq(len, PROTO_HDR_LEN + PROTO_HELLO_FIXED_LEN + strlen(ids[i]) + 8);
		memset(&out, 0xaa, sizeof(out));
		ck_assert_int_eq(proto_hello_decode(buf + PROTO_HDR_LEN, len - PROTO_HDR_LEN, &out), 0);
		ck_assert_uint_eq(out.version, in.version);
		ck_assert_uint_eq(out.caps, in.caps);
		ck_assert_mem_eq(out.nonce, in.nonce, PROTO_NONCE_LEN);
		ck_assert_uint_eq(out.listen_port, in.listen_port);
		ck_assert_str_eq(out.node_id, ids[i]);
		ck_assert_uint_eq(out.uptime_ms, in.uptime_ms);
		/* The older form, without uptime, decodes with uptime 0. */
		ck_assert_int_eq(proto_hello_decode(buf + PROTO_HDR_LEN, len - PROTO_HDR_LEN - 8,
						    &out), 0);
		ck_assert_uint_eq(out.uptime_ms, 0);
		check_truncations(buf, len);
	}
}
END_TEST

START_TEST(test_hello_bad_node_ids)
{
	const char *bad[] = { "", "a b", " a", "a ", "a\tb", "a\nb", "\x7f", "caf\xc3\xa9", "\x01",
			      "a\x1b[31m" };
	uint8_t buf[PROTO_HELLO_MAX_LEN + 64];
	struct proto_hello in, out;
	char id65[PROTO_NODE_ID_MAX + 2];
	size_t n;

	memset(id65, 'z', PROTO_NODE_ID_MAX + 1);
	id65[PROTO_NODE_ID_MAX + 1] = '\0';
	ck_assert(!proto_node_id_ok(id65));
	ck_assert(!proto_node_id_ok(NULL));
	id65[PROTO_NODE_ID_MAX] = '\0';
	ck_assert(proto_node_id_ok(id65));
	in = sample_hello("ok");
	/* The encoder refuses; a hand-built payload is refused by the decoder. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert(!proto_node_id_ok(bad[i]));
		strcpy(in.node_id, bad[i]);
		ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), -EINVAL);
		strcpy(in.node_id, "ok");
		ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), 41 + 8);
		n = strlen(bad[i]);
		buf[PROTO_HELLO_FIXED_LEN - 1] = (uint8_t)n;
		memcpy(buf + PROTO_HELLO_FIXED_LEN, bad[i], n);
		ck_assert_int_eq(proto_hello_decode(buf, PROTO_HELLO_FIXED_LEN + n, &out), -EPROTO);
	}
	/* A NUL inside the id. */
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), 41 + 8);
	buf[PROTO_HELLO_FIXED_LEN + 1] = '\0';
	ck_assert_int_eq(proto_hello_decode(buf, 41, &out), -EPROTO);
	/* 65 bytes of id: too long, even though the bytes are all there. */
	buf[PROTO_HELLO_FIXED_LEN - 1] = PROTO_NODE_ID_MAX + 1;
	memset(buf + PROTO_HELLO_FIXED_LEN, 'z', PROTO_NODE_ID_MAX + 1);
	ck_assert_int_eq(proto_hello_decode(buf, PROTO_HELLO_FIXED_LEN + PROTO_NODE_ID_MAX + 1,
					    &out), -EPROTO);
	/* The id length disagrees with the payload length, both ways. */
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), 41 + 8);
	buf[PROTO_HELLO_FIXED_LEN - 1] = 3;
	ck_assert_int_eq(proto_hello_decode(buf, 41, &out), -EPROTO);
	buf[PROTO_HELLO_FIXED_LEN - 1] = 1;
	ck_assert_int_eq(proto_hello_decode(buf, 41, &out), -EPROTO);
	/* Version 0 is never valid. */
	in.version = 0;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), -EINVAL);
	in.version = 1;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &in), 41 + 8);
	buf[0] = buf[1] = 0;
	ck_assert_int_eq(proto_hello_decode(buf, 41, &out), -EPROTO);
	/* Room checks. */
	ck_assert_int_eq(proto_hello_encode(buf, 48, &in), -ENOSPC);
	ck_assert_int_eq(proto_hello_encode(buf, 49, &in), 49);
}
END_TEST

START_TEST(test_auth_round_trip)
{
	uint8_t buf[PROTO_HDR_LEN + PROTO_AUTH_LEN];
	struct proto_auth in, out;

	for (int insecure = 0; insecure <= 1; insecure++) {
		for (int i = 0; i < PROTO_MAC_LEN; i++)
			in.mac[i] = (uint8_t)(0x80 + i);
		in.insecure = insecure;
		proto_hdr_encode(buf, PROTO_AUTH, 0, PROTO_AUTH_LEN, 0);
		proto_auth_encode(buf + PROTO_HDR_LEN, &in);
		ck_assert_uint_eq(buf[PROTO_HDR_LEN], 0x80);
		ck_assert_uint_eq(buf[sizeof(buf) - 1], insecure);
		ck_assert_int_eq(proto_auth_decode(buf + PROTO_HDR_LEN, PROTO_AUTH_LEN, &out), 0);
		ck_assert_mem_eq(out.mac, in.mac, PROTO_MAC_LEN);
		ck_assert(out.insecure == in.insecure);
		check_truncations(buf, sizeof(buf));
	}
	for (unsigned v = 2; v < 256; v++) {
		buf[sizeof(buf) - 1] = (uint8_t)v;
		ck_assert_int_eq(proto_auth_decode(buf + PROTO_HDR_LEN, PROTO_AUTH_LEN, &out),
				 -EPROTO);
	}
}
END_TEST

START_TEST(test_empty_and_ping)
{
	static const uint8_t want[] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
	const uint64_t stamps[] = { 0, 1, 0x0123456789abcdefull, UINT64_MAX };
	uint8_t buf[PROTO_HDR_LEN + PROTO_PING_LEN];
	struct proto_ping in, out;
	uint8_t byte = 0;

	ck_assert_int_eq(proto_empty_decode(NULL, 0), 0);
	ck_assert_int_eq(proto_empty_decode(&byte, 1), -EPROTO);
	proto_hdr_encode(buf, PROTO_AUTH_OK, 0, 0, 0);
	ck_assert_int_eq(decode_frame(buf, PROTO_HDR_LEN, 0), 0);
	proto_hdr_encode(buf, PROTO_AUTH_FAIL, 0, 0, 0);
	ck_assert_int_eq(decode_frame(buf, PROTO_HDR_LEN, 0), 0);

	in.mono_ms = 0x0123456789abcdefull;
	proto_ping_encode(buf, &in);
	ck_assert_mem_eq(buf, want, sizeof(want));
	for (size_t i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
		for (uint8_t type = PROTO_PING; type <= PROTO_PONG; type++) {
			in.mono_ms = stamps[i];
			proto_hdr_encode(buf, type, 0, PROTO_PING_LEN, (uint32_t)i);
			proto_ping_encode(buf + PROTO_HDR_LEN, &in);
			ck_assert_int_eq(proto_ping_decode(buf + PROTO_HDR_LEN, PROTO_PING_LEN, &out), 0);
			ck_assert_uint_eq(out.mono_ms, stamps[i]);
			check_truncations(buf, sizeof(buf));
		}
	}
}
END_TEST

START_TEST(test_get_round_trip)
{
	static const uint8_t want[PROTO_GET_LEN] = {
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,	/* file_key */
		0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0x00, 0x00,	/* file_size 10 GiB */
		0xff, 0xff, 0xfe, 0xe0, 0x8e, 0x04, 0xfb, 0x35,	/* mtime_ns -1234567890123 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xff,	/* chunk 2559 */
		0x00, 0x40, 0x00, 0x00,				/* chunk_size 4 MiB */
		0x00, 0x00, 0x00, 0x01,				/* FILL */
	};
	uint8_t buf[PROTO_HDR_LEN + PROTO_GET_LEN];
	struct proto_get in = sample_get(), out;

	proto_hdr_encode(buf, PROTO_GET, 0, PROTO_GET_LEN, 99);
	proto_get_encode(buf + PROTO_HDR_LEN, &in);
	ck_assert_mem_eq(buf + PROTO_HDR_LEN, want, sizeof(want));
	ck_assert_int_eq(proto_get_decode(buf + PROTO_HDR_LEN, PROTO_GET_LEN, &out), 0);
	ck_assert_uint_eq(out.file_key, in.file_key);
	ck_assert_uint_eq(out.file_size, in.file_size);
	ck_assert_int_eq(out.mtime_ns, in.mtime_ns);
	ck_assert_uint_eq(out.chunk, in.chunk);
	ck_assert_uint_eq(out.chunk_size, in.chunk_size);
	ck_assert_uint_eq(out.flags, in.flags);
	check_truncations(buf, sizeof(buf));
	in.flags = 0;
	in.mtime_ns = INT64_MIN;
	proto_get_encode(buf, &in);
	ck_assert_int_eq(proto_get_decode(buf, PROTO_GET_LEN, &out), 0);
	ck_assert_int_eq(out.mtime_ns, INT64_MIN);
	ck_assert_uint_eq(out.flags, 0);
}
END_TEST

static int get_rc(struct proto_get g)
{
	uint8_t buf[PROTO_GET_LEN];
	struct proto_get out;

	proto_get_encode(buf, &g);
	return proto_get_decode(buf, sizeof(buf), &out);
}

START_TEST(test_redirect)
{
	struct proto_redirect in = { .node_id = "node-7" }, out;
	uint8_t buf[PROTO_REDIRECT_MAX_LEN + 4];
	ssize_t n = proto_redirect_encode(buf, sizeof(buf), &in);
	ck_assert_int_eq(n, 7);
	ck_assert_int_eq(proto_redirect_decode(buf, (size_t)n, &out), 0);
	ck_assert_str_eq(out.node_id, "node-7");
	ck_assert_int_eq(proto_redirect_decode(buf, (size_t)n - 1, &out), -EPROTO);
	ck_assert_int_eq(proto_redirect_decode(buf, (size_t)n + 1, &out), -EPROTO);
	buf[3] = ' ';
	ck_assert_int_eq(proto_redirect_decode(buf, (size_t)n, &out), -EPROTO);
	buf[0] = 0;
	ck_assert_int_eq(proto_redirect_decode(buf, 1, &out), -EPROTO);
	struct proto_redirect bad = { .node_id = "" };
	ck_assert_int_eq(proto_redirect_encode(buf, sizeof(buf), &bad), -EINVAL);
}
END_TEST

START_TEST(test_get_inconsistent)
{
	struct proto_get g = sample_get();

	g.chunk_size = 0;
	ck_assert_int_eq(get_rc(g), -EPROTO);
	g = sample_get();
	for (int bit = 3; bit < 32; bit++) {
		g.flags = PROTO_GET_FILL | (1u << bit);
		ck_assert_int_eq(get_rc(g), -EPROTO);
	}
	/* The swarm's flags: WAIT never with FILL; NOREDIRECT with FILL. */
	g.flags = PROTO_GET_FILL | PROTO_GET_WAIT;
	ck_assert_int_eq(get_rc(g), -EPROTO);
	g.flags = PROTO_GET_WAIT;
	ck_assert_int_eq(get_rc(g), 0);
	g.flags = PROTO_GET_FILL | PROTO_GET_NOREDIRECT;
	ck_assert_int_eq(get_rc(g), 0);
	/* 10 GiB in 4 MiB chunks: 0..2559 exist, 2560 does not. */
	g = sample_get();
	g.chunk = 2560;
	ck_assert_int_eq(get_rc(g), -EPROTO);
	g.chunk = 0;
	ck_assert_int_eq(get_rc(g), 0);
	g.file_size = (10ull << 30) + 1;
	g.chunk = 2560;
	ck_assert_int_eq(get_rc(g), 0);
	g.chunk = 2561;
	ck_assert_int_eq(get_rc(g), -EPROTO);
	/* An empty file has no chunks. */
	g.file_size = 0;
	g.chunk = 0;
	ck_assert_int_eq(get_rc(g), -EPROTO);
	/* chunk * chunk_size would overflow 64 bits. */
	g.file_size = UINT64_MAX;
	g.chunk_size = UINT32_MAX;
	g.chunk = 1ull << 32;		/* starts at 2^64 - 2^32 */
	ck_assert_int_eq(get_rc(g), 0);
	g.chunk = (1ull << 32) + 1;	/* starts at 2^64 - 1, i.e. at EOF */
	ck_assert_int_eq(get_rc(g), -EPROTO);
	g.chunk = 1ull << 33;		/* chunk * chunk_size wraps to a small offset */
	ck_assert_int_eq(get_rc(g), -EPROTO);
	g.chunk = UINT64_MAX;
	ck_assert_int_eq(get_rc(g), -EPROTO);
}
END_TEST

START_TEST(test_data_round_trip)
{
	static const uint8_t want[PROTO_DATA_FIXED_LEN] = {
		0x00, 0x00, 0x00, 0x00, 0xcb, 0xf4, 0x39, 0x26, 0x00, 0x00, 0x00, 0x09,
	};
	uint8_t buf[PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN + 9];
	struct proto_data in = { .status = 0, .crc32 = 0xcbf43926, .length = 9 }, out;

	proto_hdr_encode(buf, PROTO_DATA, 0, PROTO_DATA_FIXED_LEN + 9, 5);
	proto_data_encode(buf + PROTO_HDR_LEN, &in);
	memcpy(buf + PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN, "123456789", 9);
	ck_assert_mem_eq(buf + PROTO_HDR_LEN, want, sizeof(want));
	ck_assert_int_eq(proto_data_decode(buf + PROTO_HDR_LEN, PROTO_DATA_FIXED_LEN + 9, &out), 0);
	ck_assert_int_eq(out.status, 0);
	ck_assert_uint_eq(out.crc32, 0xcbf43926);
	ck_assert_uint_eq(out.length, 9);
	ck_assert_ptr_eq(out.data, buf + PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN);
	ck_assert_int_eq(proto_data_decode_fixed(buf + PROTO_HDR_LEN, PROTO_DATA_FIXED_LEN + 9,
						 &out), 0);
	ck_assert_ptr_null(out.data);
	ck_assert_uint_eq(out.length, 9);
	check_truncations(buf, sizeof(buf));

	/* Not held: an error status with no data. */
	in = (struct proto_data){ .status = ENOENT };
	proto_hdr_encode(buf, PROTO_DATA, 0, PROTO_DATA_FIXED_LEN, 6);
	proto_data_encode(buf + PROTO_HDR_LEN, &in);
	ck_assert_int_eq(proto_data_decode(buf + PROTO_HDR_LEN, PROTO_DATA_FIXED_LEN, &out), 0);
	ck_assert_int_eq(out.status, ENOENT);
	ck_assert_uint_eq(out.length, 0);
	ck_assert_ptr_null(out.data);
	check_truncations(buf, PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN);

	/* An empty chunk with status 0 is consistent (a zero-length read). */
	in = (struct proto_data){ .status = 0 };
	proto_data_encode(buf, &in);
	ck_assert_int_eq(proto_data_decode(buf, PROTO_DATA_FIXED_LEN, &out), 0);
	ck_assert_ptr_null(out.data);
}
END_TEST

START_TEST(test_piece_round_trip)
{
	static const uint8_t want[PROTO_PIECE_FIXED_LEN] = {
		0x00, 0x00, 0x00, 0x00, 0xcb, 0xf4, 0x39, 0x26,
		0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x03,
	};
	uint8_t buf[PROTO_PIECE_FIXED_LEN + 9];
	struct proto_piece in = { .crc32 = 0xcbf43926, .length = 12, .offset = 3 }, out;

	proto_piece_encode(buf, &in);
	memcpy(buf + PROTO_PIECE_FIXED_LEN, "123456789", 9);
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_int_eq(proto_piece_decode(buf, sizeof(buf), &out), 0);
	ck_assert_int_eq(out.status, 0);
	ck_assert_uint_eq(out.crc32, 0xcbf43926);
	ck_assert_uint_eq(out.length, 12);
	ck_assert_uint_eq(out.offset, 3);
	ck_assert_uint_eq(out.n, 9);
	ck_assert_ptr_eq(out.data, buf + PROTO_PIECE_FIXED_LEN);
	ck_assert_int_eq(proto_piece_decode_fixed(buf, sizeof(buf), &out), 0);
	ck_assert_ptr_null(out.data);
	ck_assert_uint_eq(out.n, 9);
	/* Fewer bytes are a shorter piece; one more runs past the answer's length. */
	ck_assert_int_eq(proto_piece_decode(buf, sizeof(buf) - 1, &out), 0);
	ck_assert_uint_eq(out.n, 8);
	ck_assert_int_eq(proto_piece_decode_fixed(buf, sizeof(buf) + 1, &out), -EPROTO);
	ck_assert_str_eq(proto_type_name(PROTO_DATA_PIECE), "DATA_PIECE");

	/* A relay that stopped: EIO at the bytes sent so far, no bytes. */
	in = (struct proto_piece){ .status = EIO, .length = 12, .offset = 5 };
	proto_piece_encode(buf, &in);
	ck_assert_int_eq(proto_piece_decode(buf, PROTO_PIECE_FIXED_LEN, &out), 0);
	ck_assert_int_eq(out.status, EIO);
	ck_assert_uint_eq(out.offset, 5);
	ck_assert_uint_eq(out.n, 0);
	ck_assert_ptr_null(out.data);
}
END_TEST

static int piece_rc(struct proto_piece c, uint32_t payload_len)
{
	uint8_t fixed[PROTO_PIECE_FIXED_LEN];
	struct proto_piece out;

	proto_piece_encode(fixed, &c);
	return proto_piece_decode_fixed(fixed, payload_len, &out);
}

START_TEST(test_piece_inconsistent)
{
	const uint32_t F = PROTO_PIECE_FIXED_LEN;
	struct proto_piece c = { .crc32 = 1, .length = 100, .offset = 0 };

	ck_assert_int_eq(piece_rc(c, F + 100), 0);
	ck_assert_int_eq(piece_rc(c, F + 1), 0);
	ck_assert_int_eq(piece_rc(c, F), -EPROTO);	/* an empty piece */
	ck_assert_int_eq(piece_rc(c, F + 101), -EPROTO);	/* past the length */
	ck_assert_int_eq(piece_rc(c, F - 1), -EPROTO);
	ck_assert_int_eq(piece_rc(c, 0), -EPROTO);
	ck_assert_int_eq(piece_rc(c, UINT32_MAX), -EPROTO);
	c.offset = 99;
	ck_assert_int_eq(piece_rc(c, F + 1), 0);
	ck_assert_int_eq(piece_rc(c, F + 2), -EPROTO);
	c.offset = 100;	/* at the end: no room for a byte */
	ck_assert_int_eq(piece_rc(c, F + 1), -EPROTO);
	c.offset = 101;
	ck_assert_int_eq(piece_rc(c, F + 1), -EPROTO);
	/* offset + n would wrap */
	c = (struct proto_piece){ .length = UINT32_MAX, .offset = UINT32_MAX - 1 };
	ck_assert_int_eq(piece_rc(c, F + 1), 0);
	ck_assert_int_eq(piece_rc(c, F + 3), -EPROTO);
	c = (struct proto_piece){ .length = 0, .offset = 0 };
	ck_assert_int_eq(piece_rc(c, F + 1), -EPROTO);
	/* Status: positive errno only; a failure carries neither bytes nor crc, and its offset
	 * is within the length. */
	c = (struct proto_piece){ .status = EIO, .length = 100, .offset = 100 };
	ck_assert_int_eq(piece_rc(c, F), 0);
	ck_assert_int_eq(piece_rc(c, F + 1), -EPROTO);
	c.offset = 101;
	ck_assert_int_eq(piece_rc(c, F), -EPROTO);
	c = (struct proto_piece){ .status = EIO, .crc32 = 5, .length = 100 };
	ck_assert_int_eq(piece_rc(c, F), -EPROTO);
	c = (struct proto_piece){ .status = -EIO, .length = 100 };
	ck_assert_int_eq(piece_rc(c, F), -EPROTO);
	c.status = 4096;
	ck_assert_int_eq(piece_rc(c, F), -EPROTO);
	c.status = 4095;
	ck_assert_int_eq(piece_rc(c, F), 0);
}
END_TEST

static int data_rc(struct proto_data d, uint32_t payload_len)
{
	uint8_t fixed[PROTO_DATA_FIXED_LEN];
	struct proto_data out;

	proto_data_encode(fixed, &d);
	return proto_data_decode_fixed(fixed, payload_len, &out);
}

START_TEST(test_data_inconsistent)
{
	uint8_t buf[PROTO_DATA_FIXED_LEN + 100] = { 0 };
	struct proto_data d = { .status = 0, .crc32 = 1, .length = 100 }, out;

	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN + 100), 0);
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN + 99), -EPROTO);
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN + 101), -EPROTO);
	ck_assert_int_eq(data_rc(d, 0), -EPROTO);
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN - 1), -EPROTO);
	ck_assert_int_eq(data_rc(d, UINT32_MAX), -EPROTO);
	/* A length that wraps when added to the fixed part. */
	d.length = UINT32_MAX - PROTO_DATA_FIXED_LEN + 1;
	ck_assert_int_eq(data_rc(d, 0), -EPROTO);
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN - 1), -EPROTO);
	d.length = UINT32_MAX;
	ck_assert_int_eq(data_rc(d, UINT32_MAX), -EPROTO);
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN - 1), -EPROTO);
	/* Status: positive errno only, and an error carries neither data nor crc. */
	d = (struct proto_data){ .status = -EIO };
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN), -EPROTO);
	d.status = INT32_MIN;
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN), -EPROTO);
	d.status = 4096;
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN), -EPROTO);
	d.status = 4095;
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN), 0);
	d = (struct proto_data){ .status = EIO, .length = 1 };
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN + 1), -EPROTO);
	d = (struct proto_data){ .status = EIO, .crc32 = 5 };
	ck_assert_int_eq(data_rc(d, PROTO_DATA_FIXED_LEN), -EPROTO);
	/* The whole-payload decoder agrees. */
	d = (struct proto_data){ .status = 0, .crc32 = 1, .length = 100 };
	proto_data_encode(buf, &d);
	ck_assert_int_eq(proto_data_decode(buf, sizeof(buf), &out), 0);
	ck_assert_int_eq(proto_data_decode(buf, sizeof(buf) - 1, &out), -EPROTO);
	ck_assert_int_eq(proto_data_decode(buf, PROTO_DATA_FIXED_LEN, &out), -EPROTO);
	ck_assert_int_eq(proto_data_decode(buf, 3, &out), -EPROTO);
}
END_TEST

/* Random bytes into every decoder: no crash, and any success is self-consistent. */
START_TEST(test_garbage)
{
	uint32_t x = 0x9e3779b9;
	struct proto_hdr h;
	struct proto_hello hello;
	struct proto_data d;

	for (int iter = 0; iter < 200000; iter++) {
		size_t len = xorshift32(&x) % GARBAGE_MAX;
		uint8_t *p = malloc(len ? len : 1);

		ck_assert_ptr_nonnull(p);
		for (size_t i = 0; i < len; i++)
			p[i] = (uint8_t)xorshift32(&x);
		/* Often give garbage a valid magic and version so that deeper checks run. */
		if (len >= 5 && (iter & 1)) {
			memcpy(p, "MOWS\x01", 5);
			if (len >= 16 && (iter & 2))
				p[6] = p[7] = 0;
		}
		if (proto_hdr_decode(p, len, &h, GARBAGE_MAX) == 0) {
			ck_assert(h.type >= 1 && h.type <= PROTO_TYPE_MAX);
			ck_assert_uint_le(h.len, GARBAGE_MAX);
		}
		for (uint8_t t = 1; t <= PROTO_TYPE_MAX; t++)
			decode_payload(t, p, len);
		if (proto_hello_decode(p, len, &hello) == 0) {
			ck_assert(proto_node_id_ok(hello.node_id));
			ck_assert(len == PROTO_HELLO_FIXED_LEN + strlen(hello.node_id) ||
				  len == PROTO_HELLO_FIXED_LEN + strlen(hello.node_id) + 8);
		}
		if (proto_data_decode(p, len, &d) == 0)
			ck_assert_uint_eq(len, PROTO_DATA_FIXED_LEN + d.length);
		free(p);
	}
}
END_TEST

START_TEST(test_prefetch_round_trip)
{
	struct proto_prefetch in = { .run_id = 0x0102030405060708ull, .file_key = 0x1122334455667788ull,
				     .file_size = 5ull << 30, .mtime_ns = -3, .placement = 0xfeedull,
				     .chunk_size = 4u << 20 }, out;
	uint8_t buf[PROTO_PREFETCH_LEN + 1];
	static const uint8_t head[] = { 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x22 };

	ck_assert_uint_eq(PROTO_PREFETCH_LEN, 48);
	proto_prefetch_encode(buf, &in);
	ck_assert_mem_eq(buf, head, sizeof(head)); /* big-endian on the wire */
	ck_assert_int_eq(proto_prefetch_decode(buf, PROTO_PREFETCH_LEN, &out), 0);
	ck_assert_uint_eq(out.run_id, in.run_id);
	ck_assert_uint_eq(out.file_key, in.file_key);
	ck_assert_uint_eq(out.file_size, in.file_size);
	ck_assert_int_eq(out.mtime_ns, -3);
	ck_assert_uint_eq(out.placement, in.placement);
	ck_assert_uint_eq(out.chunk_size, in.chunk_size);
	ck_assert_uint_eq(out.flags, 0);
	/* Every length but 48 is refused, and nothing is written then. */
	struct proto_prefetch keep = { .run_id = 77 };
	for (size_t len = 0; len <= sizeof(buf); len++) {
		if (len == PROTO_PREFETCH_LEN)
			continue;
		out = keep;
		ck_assert_int_eq(proto_prefetch_decode(buf, len, &out), -EPROTO);
		ck_assert_uint_eq(out.run_id, 77);
	}
	struct proto_prefetch bad = in;
	bad.run_id = 0;
	proto_prefetch_encode(buf, &bad);
	ck_assert_int_eq(proto_prefetch_decode(buf, PROTO_PREFETCH_LEN, &out), -EPROTO);
	bad = in;
	bad.chunk_size = 0;
	proto_prefetch_encode(buf, &bad);
	ck_assert_int_eq(proto_prefetch_decode(buf, PROTO_PREFETCH_LEN, &out), -EPROTO);
	bad = in;
	bad.flags = 1;
	proto_prefetch_encode(buf, &bad);
	ck_assert_int_eq(proto_prefetch_decode(buf, PROTO_PREFETCH_LEN, &out), -EPROTO);
	/* An empty file is a valid request: its share is empty. */
	bad = in;
	bad.file_size = 0;
	proto_prefetch_encode(buf, &bad);
	ck_assert_int_eq(proto_prefetch_decode(buf, PROTO_PREFETCH_LEN, &out), 0);
}
END_TEST

START_TEST(test_prefetch_status)
{
	struct proto_prefetch_status in = { .status = 0, .flags = PROTO_PREFETCH_DONE,
					    .done = 123, .total = 1ull << 40 }, out;
	uint8_t buf[PROTO_PREFETCH_STATUS_LEN + 1];

	ck_assert_uint_eq(PROTO_PREFETCH_STATUS_LEN, 24);
	proto_prefetch_status_encode(buf, &in);
	ck_assert_int_eq(proto_prefetch_status_decode(buf, PROTO_PREFETCH_STATUS_LEN, &out), 0);
	ck_assert_int_eq(out.status, 0);
	ck_assert_uint_eq(out.flags, PROTO_PREFETCH_DONE);
	ck_assert_uint_eq(out.done, 123);
	ck_assert_uint_eq(out.total, 1ull << 40);
	ck_assert_int_eq(proto_prefetch_status_decode(buf, PROTO_PREFETCH_STATUS_LEN - 1, &out),
			 -EPROTO);
	ck_assert_int_eq(proto_prefetch_status_decode(buf, PROTO_PREFETCH_STATUS_LEN + 1, &out),
			 -EPROTO);
	ck_assert_int_eq(proto_prefetch_status_decode(buf, 0, &out), -EPROTO);
	static const struct proto_prefetch_status bad[] = {
		{ .status = -1 }, { .status = 4096 }, { .flags = 2 }, { .flags = 0x80000000u },
		{ .done = 2, .total = 1 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		proto_prefetch_status_encode(buf, &bad[i]);
		ck_assert_int_eq(proto_prefetch_status_decode(buf, PROTO_PREFETCH_STATUS_LEN, &out),
				 -EPROTO);
	}
	in = (struct proto_prefetch_status){ .status = EAGAIN };
	proto_prefetch_status_encode(buf, &in);
	ck_assert_int_eq(proto_prefetch_status_decode(buf, PROTO_PREFETCH_STATUS_LEN, &out), 0);
	ck_assert_int_eq(out.status, EAGAIN);
}
END_TEST

START_TEST(test_file_key)
{
	const char *path = "model/weights.bin";
	uint64_t k = proto_file_key(path, 1048576, 1700000000123456789ll);

	/* Known answers, from an independent Python implementation of the definition. */
	ck_assert_uint_eq(k, 0x1ed7c03f21faae50ull);
	ck_assert_uint_eq(proto_file_key("", 0, 0), 0x6b814506eb065361ull);
	ck_assert_uint_eq(proto_file_key("a", 1, -1), 0x7249a1b8b6c11601ull);
	ck_assert_uint_eq(proto_file_key(path, 1048577, 1700000000123456789ll),
			  0xc501bb2fb80c6afcull);
	/* Stable, and every input matters. */
	ck_assert_uint_eq(proto_file_key(path, 1048576, 1700000000123456789ll), k);
	ck_assert_uint_ne(proto_file_key("model/weights.bim", 1048576, 1700000000123456789ll), k);
	ck_assert_uint_ne(proto_file_key("model/weights.bin2", 1048576, 1700000000123456789ll), k);
	ck_assert_uint_ne(proto_file_key("/model/weights.bin", 1048576, 1700000000123456789ll), k);
	ck_assert_uint_ne(proto_file_key(path, 1048575, 1700000000123456789ll), k);
	ck_assert_uint_ne(proto_file_key(path, 1048576, 1700000000123456788ll), k);
	ck_assert_uint_ne(proto_file_key(path, 1048576, -1700000000123456789ll), k);
	/* Each single bit of size and mtime changes the key, and about half its bits. */
	for (int bit = 0; bit < 64; bit++) {
		uint64_t ks = proto_file_key(path, 1048576 ^ (1ull << bit), 1700000000123456789ll);
		uint64_t km = proto_file_key(path, 1048576,
					     (int64_t)(1700000000123456789ull ^ (1ull << bit)));

		ck_assert_int_ge(__builtin_popcountll(ks ^ k), 12);
		ck_assert_int_ge(__builtin_popcountll(km ^ k), 12);
	}
}
END_TEST

START_TEST(test_meta_get)
{
	struct proto_meta_get in = { .have_version = 0x0102030405060708ull, .offset = 0,
				     .flags = PROTO_META_REFRESH }, out;
	uint8_t buf[PROTO_META_GET_LEN + 1];
	static const uint8_t head[] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	ck_assert_uint_eq(PROTO_META_GET_LEN, 24);
	proto_meta_get_encode(buf, &in);
	ck_assert_mem_eq(buf, head, sizeof(head));
	ck_assert_int_eq(proto_meta_get_decode(buf, PROTO_META_GET_LEN, &out), 0);
	ck_assert_uint_eq(out.have_version, in.have_version);
	ck_assert_uint_eq(out.flags, PROTO_META_REFRESH);
	for (size_t len = 0; len <= sizeof(buf); len++)
		if (len != PROTO_META_GET_LEN)
			ck_assert_int_eq(proto_meta_get_decode(buf, len, &out), -EPROTO);
	struct proto_meta_get bad = in;
	bad.offset = 5; /* REFRESH only at the start */
	proto_meta_get_encode(buf, &bad);
	ck_assert_int_eq(proto_meta_get_decode(buf, PROTO_META_GET_LEN, &out), -EPROTO);
	bad.flags = 0;
	proto_meta_get_encode(buf, &bad);
	ck_assert_int_eq(proto_meta_get_decode(buf, PROTO_META_GET_LEN, &out), 0);
	bad.flags = 2;
	proto_meta_get_encode(buf, &bad);
	ck_assert_int_eq(proto_meta_get_decode(buf, PROTO_META_GET_LEN, &out), -EPROTO);
	proto_meta_get_encode(buf, &in);
	buf[PROTO_META_GET_LEN - 1] = 1; /* reserved */
	ck_assert_int_eq(proto_meta_get_decode(buf, PROTO_META_GET_LEN, &out), -EPROTO);
}
END_TEST

/* Encodes @in with @n piece bytes and decodes it. */
static int meta_rt(const struct proto_meta *in, uint32_t n, struct proto_meta *out)
{
	static uint8_t buf[PROTO_META_FIXED_LEN + 64];
	proto_meta_encode(buf, in);
	memset(buf + PROTO_META_FIXED_LEN, 0xab, n);
	return proto_meta_decode(buf, PROTO_META_FIXED_LEN + n, out);
}

START_TEST(test_meta_answer)
{
	struct proto_meta in = { .version = 9, .age_ms = 1500, .total = 100, .offset = 90 }, out;
	ck_assert_uint_eq(PROTO_META_FIXED_LEN, 40);
	ck_assert_int_eq(meta_rt(&in, 10, &out), 0);
	ck_assert_uint_eq(out.length, 10);
	ck_assert_uint_eq(out.age_ms, 1500);
	ck_assert_uint_eq(out.data[9], 0xab);
	ck_assert_int_eq(meta_rt(&in, 11, &out), -EPROTO);  /* past total */
	ck_assert_int_eq(meta_rt(&in, 0, &out), -EPROTO);   /* no bytes, none SAME */
	struct proto_meta same = { .flags = PROTO_META_SAME, .version = 9, .total = 100 };
	ck_assert_int_eq(meta_rt(&same, 0, &out), 0);
	ck_assert_int_eq(meta_rt(&same, 1, &out), -EPROTO);
	struct proto_meta st = { .status = 11 };
	ck_assert_int_eq(meta_rt(&st, 0, &out), 0);
	ck_assert_int_eq(out.status, 11);
	ck_assert_int_eq(meta_rt(&st, 1, &out), -EPROTO);
	st.status = -1;
	ck_assert_int_eq(meta_rt(&st, 0, &out), -EPROTO);
	struct proto_meta bad = in;
	bad.version = 0;
	ck_assert_int_eq(meta_rt(&bad, 10, &out), -EPROTO);
	bad = in;
	bad.flags = 2;
	ck_assert_int_eq(meta_rt(&bad, 10, &out), -EPROTO);
	bad = in;
	bad.total = (uint64_t)PROTO_META_TOTAL_MAX + 1;
	ck_assert_int_eq(meta_rt(&bad, 10, &out), -EPROTO);
	struct proto_meta empty = { .version = 3, .total = 0 };
	ck_assert_int_eq(meta_rt(&empty, 0, &out), 0);
	ck_assert_ptr_null(out.data);
	uint8_t small[PROTO_META_FIXED_LEN - 1] = { 0 };
	ck_assert_int_eq(proto_meta_decode(small, sizeof(small), &out), -EPROTO);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hdr_bytes_and_round_trip);
	tcase_add_test(tc, test_hdr_every_type);
	tcase_add_test(tc, test_rdma_ticket_round_trip);
	tcase_add_test(tc, test_hdr_bad_magic_version_type_flags);
	tcase_add_test(tc, test_hdr_oversized);
	tcase_add_test(tc, test_hello_round_trip);
	tcase_add_test(tc, test_hello_bad_node_ids);
	tcase_add_test(tc, test_auth_round_trip);
	tcase_add_test(tc, test_empty_and_ping);
	tcase_add_test(tc, test_get_round_trip);
	tcase_add_test(tc, test_get_inconsistent);
	tcase_add_test(tc, test_redirect);
	tcase_add_test(tc, test_data_round_trip);
	tcase_add_test(tc, test_data_inconsistent);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_prefetch_round_trip);
	tcase_add_test(tc, test_prefetch_status);
	tcase_add_test(tc, test_file_key);
	tcase_add_test(tc, test_meta_get);
	tcase_add_test(tc, test_meta_answer);
	tcase_add_test(tc, test_piece_round_trip);
	tcase_add_test(tc, test_piece_inconsistent);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
