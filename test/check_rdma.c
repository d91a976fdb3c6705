/*
 * Pins the device-free half of net/rdma.c: the exact bytes of each message, round trips,
 * rejection of every truncated, padded or out-of-range input, the connect and accept
 * private data, the slab range check and the lease table. The part that needs a device
 * runs in a VM: test/rdma/ (make check-rdma).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "net/rdma.h"

static const struct proto_get a_get = {
	.file_key = 0x0102030405060708ull,
	.file_size = 10ull << 20,
	.mtime_ns = 1700000000123456789ll,
	.chunk = 2,
	.chunk_size = 4u << 20,
	.flags = PROTO_GET_FILL,
};

static const struct rdma_desc a_desc = {
	.status = 0,
	.crc32 = 0xcbf43926,
	.length = 2u << 20,
	.rkey = 0x11223344,
	.addr = 0x00007f0012345000ull,
	.lease = 0x0000000500000007ull,
	.digest = { .kind = DIGEST_CRC32, .len = 4, .bytes = { 0xcb, 0xf4, 0x39, 0x26 } },
};

#define CRC_DIGEST { .kind = DIGEST_CRC32, .len = 4, .bytes = { 1, 2, 3, 4 } }

static uint32_t xorshift32(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void quiet(void)
{
	log_set_level(LOG_ERR - 1);
}

static size_t encode(uint8_t *buf, const struct rdma_msg *m)
{
	ssize_t n = rdma_msg_encode(buf, RDMA_MSG_MAX, m);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

/* Every shorter and one longer input is refused. */
static void check_lengths(const uint8_t *buf, size_t len)
{
	uint8_t big[RDMA_MSG_MAX + 1] = { 0 };
	struct rdma_msg m;
	for (size_t n = 0; n < len; n++)
		ck_assert_int_eq(rdma_msg_decode(buf, n, &m), -EPROTO);
	memcpy(big, buf, len);
	ck_assert_int_eq(rdma_msg_decode(big, len + 1, &m), -EPROTO);
	ck_assert_int_eq(rdma_msg_decode(buf, len, &m), 0);
}

START_TEST(test_desc_req_bytes)
{
	struct rdma_msg m = { .type = RDMA_MSG_DESC_REQ, .req_id = 0xa1b2c3d4, .u.get = a_get,
			      .digest_kind = DIGEST_SHA256 };
	struct rdma_msg out;
	uint8_t buf[RDMA_MSG_MAX];
	static const uint8_t want[RDMA_DESC_REQ_LEN] = {
		2, 1, 0, 0, 0xa1, 0xb2, 0xc3, 0xd4,
		1, 2, 3, 4, 5, 6, 7, 8,
		0, 0, 0, 0, 0, 0xa0, 0, 0,
		0x17, 0x97, 0x9c, 0xfe, 0x3d, 0x85, 0xcd, 0x15,
		0, 0, 0, 0, 0, 0, 0, 2,
		0, 0x40, 0, 0, 0, 0, 0, 1,
		DIGEST_SHA256, 0, 0, 0,
	};

	ck_assert_uint_eq(encode(buf, &m), RDMA_DESC_REQ_LEN);
	ck_assert_mem_eq(buf, want, sizeof(want));
	check_lengths(buf, RDMA_DESC_REQ_LEN);
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_REQ_LEN, &out), 0);
	ck_assert_uint_eq(out.type, RDMA_MSG_DESC_REQ);
	ck_assert_uint_eq(out.req_id, 0xa1b2c3d4);
	ck_assert_uint_eq(out.digest_kind, DIGEST_SHA256);
	ck_assert_mem_eq(&out.u.get, &a_get, sizeof(a_get));
}
END_TEST

START_TEST(test_desc_bytes)
{
	struct rdma_msg m = { .type = RDMA_MSG_DESC, .req_id = 7, .u.desc = a_desc };
	struct rdma_msg out;
	uint8_t buf[RDMA_MSG_MAX];
	static const uint8_t want[RDMA_DESC_LEN] = {
		2, 2, 0, 0, 0, 0, 0, 7,
		0, 0, 0, 0, 0xcb, 0xf4, 0x39, 0x26,
		0, 0x20, 0, 0, 0x11, 0x22, 0x33, 0x44,
		0, 0, 0x7f, 0, 0x12, 0x34, 0x50, 0,
		0, 0, 0, 5, 0, 0, 0, 7,
		DIGEST_CRC32, 4, 0, 0, 0xcb, 0xf4, 0x39, 0x26,
		/* 28 bytes of zero padding follow */
	};

	ck_assert_uint_eq(encode(buf, &m), RDMA_DESC_LEN);
	ck_assert_mem_eq(buf, want, sizeof(want));
	check_lengths(buf, RDMA_DESC_LEN);
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_LEN, &out), 0);
	ck_assert_uint_eq(out.type, RDMA_MSG_DESC);
	ck_assert_uint_eq(out.req_id, 7);
	ck_assert_mem_eq(&out.u.desc, &a_desc, sizeof(a_desc));
}
END_TEST

START_TEST(test_release_bytes)
{
	struct rdma_msg m = { .type = RDMA_MSG_RELEASE, .u.lease = 0x0000000900000003ull };
	struct rdma_msg out;
	uint8_t buf[RDMA_MSG_MAX];
	static const uint8_t want[RDMA_RELEASE_LEN] = {
		2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 3,
	};

	ck_assert_uint_eq(encode(buf, &m), RDMA_RELEASE_LEN);
	ck_assert_mem_eq(buf, want, sizeof(want));
	check_lengths(buf, RDMA_RELEASE_LEN);
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_RELEASE_LEN, &out), 0);
	ck_assert_uint_eq(out.u.lease, m.u.lease);
	/* A RELEASE carries no request id. */
	buf[7] = 1;
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_RELEASE_LEN, &out), -EPROTO);
}
END_TEST

START_TEST(test_header_rules)
{
	struct rdma_msg m = { .type = RDMA_MSG_DESC, .req_id = 1, .u.desc = a_desc }, out;
	uint8_t buf[RDMA_MSG_MAX], bad[RDMA_MSG_MAX];
	size_t len = encode(buf, &m);

	memcpy(bad, buf, len);
	bad[0] = 1; /* version 1 sent descriptors over RDMA: refused */
	ck_assert_int_eq(rdma_msg_decode(bad, len, &out), -EPROTO);
	bad[0] = 3;
	ck_assert_int_eq(rdma_msg_decode(bad, len, &out), -EPROTO);
	memcpy(bad, buf, len);
	bad[0] = 0;
	ck_assert_int_eq(rdma_msg_decode(bad, len, &out), -EPROTO);
	for (int k = 2; k < 4; k++) { /* reserved */
		memcpy(bad, buf, len);
		bad[k] = 0x80;
		ck_assert_int_eq(rdma_msg_decode(bad, len, &out), -EPROTO);
	}
	for (int t = 0; t < 256; t++) {
		if (t == RDMA_MSG_DESC)
			continue;
		memcpy(bad, buf, len);
		bad[1] = (uint8_t)t; /* a 76-byte body is only ever a DESC */
		ck_assert_int_eq(rdma_msg_decode(bad, len, &out), -EPROTO);
	}
	ck_assert_int_eq(rdma_msg_decode(NULL, 0, &out), -EPROTO);
}
END_TEST

START_TEST(test_desc_rules)
{
	struct rdma_msg m = { .type = RDMA_MSG_DESC, .req_id = 3 }, out;
	uint8_t buf[RDMA_MSG_MAX];
	struct rdma_desc bad[] = {
		{ .status = -1 },
		{ .status = 4096 },
		{ .status = ENOENT, .crc32 = 1 },
		{ .status = ENOENT, .length = 1 },
		{ .status = EIO, .rkey = 1 },
		{ .status = EIO, .addr = 1 },
		{ .status = EIO, .lease = 1 },
		{ .length = 0, .addr = 4096, .lease = 1, .digest = CRC_DIGEST },       /* empty */
		{ .length = 16, .addr = 4096, .lease = 0, .digest = CRC_DIGEST },      /* no lease */
		{ .length = 16, .addr = UINT64_MAX - 8, .lease = 1, .digest = CRC_DIGEST }, /* wraps */
		{ .length = 16, .addr = 4096, .lease = 1 },                            /* no digest */
		{ .length = 16, .addr = 4096, .lease = 1,                              /* GMAC */
		  .digest = { .kind = DIGEST_GMAC, .len = 16 } },
		{ .length = 16, .addr = 4096, .lease = 1,                              /* short */
		  .digest = { .kind = DIGEST_SHA256, .len = 4 } },
		{ .length = 16, .addr = 4096, .lease = 1,                              /* padding */
		  .digest = { .kind = DIGEST_CRC32, .len = 4, .bytes = { [4] = 1 } } },
		{ .status = ENOENT, .digest = CRC_DIGEST },                            /* with error */
	};
	struct rdma_desc good[] = {
		{ .status = ENOENT },
		{ .status = 4095 },
		{ .length = 1, .addr = 0, .lease = 1, .digest = CRC_DIGEST },
		{ .length = UINT32_MAX, .addr = UINT64_MAX - UINT32_MAX, .lease = UINT64_MAX,
		  .digest = { .kind = DIGEST_SHA256, .len = 32, .bytes = { 9, [31] = 9 } } },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m.u.desc = bad[i];
		ck_assert_msg(rdma_msg_encode(buf, sizeof(buf), &m) == -EINVAL, "bad[%zu] encoded", i);
		/* Forge it on the wire from a good one and a patch, to pin the decoder too. */
		struct rdma_msg g = { .type = RDMA_MSG_DESC, .req_id = 3, .u.desc = a_desc };
		encode(buf, &g);
		uint32_t st = htobe32((uint32_t)bad[i].status), crc = htobe32(bad[i].crc32),
			 len = htobe32(bad[i].length), rkey = htobe32(bad[i].rkey);
		uint64_t addr = htobe64(bad[i].addr), lease = htobe64(bad[i].lease);
		memcpy(buf + 8, &st, 4);
		memcpy(buf + 12, &crc, 4);
		memcpy(buf + 16, &len, 4);
		memcpy(buf + 20, &rkey, 4);
		memcpy(buf + 24, &addr, 8);
		memcpy(buf + 32, &lease, 8);
		buf[40] = bad[i].digest.kind;
		buf[41] = bad[i].digest.len;
		memcpy(buf + 44, bad[i].digest.bytes, DIGEST_MAX);
		ck_assert_msg(rdma_msg_decode(buf, RDMA_DESC_LEN, &out) == -EPROTO,
			      "bad[%zu] decoded", i);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		m.u.desc = good[i];
		ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), RDMA_DESC_LEN);
		ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_LEN, &out), 0);
		ck_assert_mem_eq(&out.u.desc, &good[i], sizeof(good[i]));
	}
}
END_TEST

START_TEST(test_desc_req_rules)
{
	struct rdma_msg m = { .type = RDMA_MSG_DESC_REQ, .req_id = 1, .u.get = a_get,
			      .digest_kind = DIGEST_SHA256 }, out;
	uint8_t buf[RDMA_MSG_MAX];

	m.digest_kind = DIGEST_GMAC; /* not a kind a reader may ask for */
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
	m.digest_kind = DIGEST_SHA256;
	m.u.get.chunk_size = 0;
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
	m.u.get = a_get;
	m.u.get.flags = 1u << 5; /* no GET flag (net/proto.h PROTO_GET_FLAGS_KNOWN) */
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
	m.u.get = a_get;
	m.u.get.chunk = 3; /* starts at 12 MiB, past the 10 MiB file */
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
	m.u.get = a_get;
	ck_assert_int_eq(rdma_msg_encode(buf, RDMA_DESC_REQ_LEN - 1, &m), -ENOSPC);
	ck_assert_int_eq(rdma_msg_encode(buf, RDMA_DESC_REQ_LEN, &m), RDMA_DESC_REQ_LEN);
	buf[47] = 1u << 5; /* unknown GET flag on the wire */
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_REQ_LEN, &out), -EPROTO);
	buf[47] = 1;
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_REQ_LEN, &out), 0);
	buf[48] = 0; /* no digest kind */
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_REQ_LEN, &out), -EPROTO);
	buf[48] = DIGEST_CRC32;
	buf[50] = 1; /* padding */
	ck_assert_int_eq(rdma_msg_decode(buf, RDMA_DESC_REQ_LEN, &out), -EPROTO);
	m.type = 0;
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
	m.type = RDMA_MSG_RELEASE;
	m.req_id = 0;
	m.u.lease = 0;
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
	m.u.lease = 1;
	m.req_id = 5;
	ck_assert_int_eq(rdma_msg_encode(buf, sizeof(buf), &m), -EINVAL);
}
END_TEST

/* Garbage never crashes the decoder; whatever it accepts encodes back to the same bytes. */
START_TEST(test_garbage)
{
	uint32_t x = 0x9e3779b9;
	uint8_t buf[RDMA_MSG_MAX], again[RDMA_MSG_MAX];
	struct rdma_msg out;
	unsigned accepted = 0;

	for (int i = 0; i < 200000; i++) {
		size_t len = xorshift32(&x) % (RDMA_MSG_MAX + 1);
		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)xorshift32(&x);
		if (len >= 2 && (x & 3)) {  /* mostly plausible headers */
			buf[0] = RDMA_PROTO_VERSION;
			buf[1] = (uint8_t)(1 + x % 3);
			if (len >= 4)
				buf[2] = buf[3] = 0;
			len = buf[1] == RDMA_MSG_DESC_REQ ? RDMA_DESC_REQ_LEN :
			      buf[1] == RDMA_MSG_DESC ? RDMA_DESC_LEN : RDMA_RELEASE_LEN;
			/* Half the bytes zero, so that fields often land in range. */
			for (size_t k = 4; k < len; k++)
				buf[k] = xorshift32(&x) & 1 ? 0 : (uint8_t)(x >> 8);
		}
		if (rdma_msg_decode(buf, len, &out))
			continue;
		accepted++;
		ck_assert_int_eq(rdma_msg_encode(again, sizeof(again), &out), (ssize_t)len);
		ck_assert_mem_eq(again, buf, len);
	}
	ck_assert_uint_gt(accepted, 100);
}
END_TEST

START_TEST(test_connect_priv)
{
	uint8_t ticket[RDMA_TICKET_LEN], got[RDMA_TICKET_LEN], buf[56] = { 0 };
	for (int i = 0; i < RDMA_TICKET_LEN; i++)
		ticket[i] = (uint8_t)(0xa0 + i);

	rdma_connect_priv_encode(buf, ticket);
	ck_assert_uint_eq(buf[0], 'M');
	ck_assert_uint_eq(buf[1], 'W');
	ck_assert_uint_eq(buf[2], 'R');
	ck_assert_uint_eq(buf[3], 'D');
	ck_assert_uint_eq(buf[4], RDMA_PROTO_VERSION);
	ck_assert_mem_eq(buf + 8, ticket, RDMA_TICKET_LEN);
	/* rdma_cm hands the listener its whole private data area, zero-padded. */
	ck_assert_int_eq(rdma_connect_priv_decode(buf, sizeof(buf), got), 0);
	ck_assert_mem_eq(got, ticket, RDMA_TICKET_LEN);
	ck_assert_int_eq(rdma_connect_priv_decode(buf, RDMA_CONNECT_PRIV_LEN, got), 0);
	ck_assert_int_eq(rdma_connect_priv_decode(buf, RDMA_CONNECT_PRIV_LEN - 1, got), -EPROTO);
	ck_assert_int_eq(rdma_connect_priv_decode(NULL, 56, got), -EPROTO);
	for (int k = 0; k < 8; k++) {
		uint8_t bad[56];
		memcpy(bad, buf, sizeof(bad));
		bad[k] ^= 0x40;
		ck_assert_msg(rdma_connect_priv_decode(bad, sizeof(bad), got) == -EPROTO,
			      "byte %d", k);
	}
}
END_TEST

START_TEST(test_accept_priv)
{
	uint8_t buf[196] = { 0 };
	for (int why = RDMA_REFUSE_NONE; why <= RDMA_REFUSE_DEVICE; why++) {
		rdma_accept_priv_encode(buf, (enum rdma_refusal)why);
		ck_assert_int_eq(rdma_accept_priv_decode(buf, sizeof(buf)), why);
		ck_assert_int_eq(rdma_accept_priv_decode(buf, RDMA_ACCEPT_PRIV_LEN), why);
	}
	ck_assert_int_eq(rdma_accept_priv_decode(buf, RDMA_ACCEPT_PRIV_LEN - 1), -EPROTO);
	ck_assert_int_eq(rdma_accept_priv_decode(NULL, 0), -EPROTO);
	buf[5] = 4;
	ck_assert_int_eq(rdma_accept_priv_decode(buf, sizeof(buf)), -EPROTO);
	/* A plain rdma_cm peer's zeros are not a mows answer. */
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(rdma_accept_priv_decode(buf, sizeof(buf)), -EPROTO);
}
END_TEST

START_TEST(test_range_inside)
{
	static uint8_t mem[3 * 4096];
	uint8_t *slab = mem + 4096;
	const uint8_t *b = slab;

	ck_assert(rdma_range_inside(slab, 4096, b, 4096));
	ck_assert(rdma_range_inside(slab, 4096, b + 4095, 1));
	ck_assert(rdma_range_inside(slab, 4096, b + 1000, 96));
	ck_assert(!rdma_range_inside(slab, 4096, b, 4097));
	ck_assert(!rdma_range_inside(slab, 4096, b + 4095, 2));
	ck_assert(!rdma_range_inside(slab, 4096, b + 4096, 1));
	ck_assert(!rdma_range_inside(slab, 4096, b, 0));
	ck_assert(!rdma_range_inside(slab, 4096, b - 1, 2));
	ck_assert(!rdma_range_inside(slab, 4096, b + 8, SIZE_MAX));
	ck_assert(!rdma_range_inside(slab, 0, b, 1));
}
END_TEST

static struct cache_span span_at(unsigned i)
{
	return (struct cache_span){ .data = (const void *)(uintptr_t)(0x10000 + i * 64),
				    .len = 64, .slot = i };
}

START_TEST(test_leases_basic)
{
	struct rdma_leases t;
	struct cache_span s0 = span_at(0), s1 = span_at(1), out;
	uint64_t a, b;
	int me, other;

	ck_assert_int_eq(rdma_leases_init(&t, 4), 0);
	ck_assert_int_eq(rdma_leases_add(&t, &me, &s0, 100, &a), 0);
	ck_assert_int_eq(rdma_leases_add(&t, &me, &s1, 100, &b), 0);
	ck_assert_uint_ne(a, 0);
	ck_assert_uint_ne(b, 0);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_eq(t.active, 2);
	ck_assert_uint_eq(rdma_leases_count(&t, &me), 2);
	ck_assert_uint_eq(rdma_leases_count(&t, &other), 0);
	/* Only its holder ends a lease, once. */
	ck_assert_int_eq(rdma_leases_take(&t, a, &other, &out), -ENOENT);
	ck_assert_int_eq(rdma_leases_take(&t, a, &me, &out), 0);
	ck_assert_uint_eq(out.slot, 0);
	ck_assert_int_eq(rdma_leases_take(&t, a, &me, &out), -ENOENT);
	ck_assert_int_eq(rdma_leases_take(&t, 0, &me, &out), -ENOENT);
	ck_assert_int_eq(rdma_leases_take(&t, (uint64_t)1 << 32 | 999, &me, &out), -ENOENT);
	ck_assert_uint_eq(t.active, 1);
	ck_assert_int_eq(rdma_leases_take(&t, b, &me, &out), 0);
	ck_assert_uint_eq(out.slot, 1);
	ck_assert_uint_eq(t.active, 0);
	rdma_leases_release(&t);
	rdma_leases_release(&t);
}
END_TEST

START_TEST(test_leases_full_and_reuse)
{
	struct rdma_leases t;
	struct cache_span s = span_at(0), out;
	uint64_t ids[3], extra, again;
	int me;

	ck_assert_int_eq(rdma_leases_init(&t, 3), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(rdma_leases_add(&t, &me, &s, 1, &ids[i]), 0);
	ck_assert_int_eq(rdma_leases_add(&t, &me, &s, 1, &extra), -ENOSPC);
	ck_assert_int_eq(rdma_leases_take(&t, ids[1], &me, &out), 0);
	ck_assert_int_eq(rdma_leases_add(&t, &me, &s, 1, &again), 0);
	/* Same slot, new generation: the old id is dead. */
	ck_assert_uint_eq((uint32_t)again, (uint32_t)ids[1]);
	ck_assert_uint_ne(again, ids[1]);
	ck_assert_int_eq(rdma_leases_take(&t, ids[1], &me, &out), -ENOENT);
	ck_assert_int_eq(rdma_leases_take(&t, again, &me, &out), 0);
	/* The generation wraps past 0 without ever making id 0. */
	t.gen[(uint32_t)again] = UINT32_MAX;
	ck_assert_int_eq(rdma_leases_add(&t, &me, &s, 1, &again), 0);
	ck_assert_uint_ne(again >> 32, 0);
	rdma_leases_release(&t);
}
END_TEST

START_TEST(test_leases_expiry_and_owner)
{
	struct rdma_leases t;
	struct cache_span out[8];
	uint64_t id;
	int a, b;

	ck_assert_int_eq(rdma_leases_init(&t, 16), 0);
	for (unsigned i = 0; i < 10; i++) {
		struct cache_span s = span_at(i);
		ck_assert_int_eq(rdma_leases_add(&t, i % 2 ? &a : &b, &s, 100 + i, &id), 0);
	}
	ck_assert_uint_eq(rdma_leases_take_expired(&t, 99, out, 8), 0);
	/* 100..103 expired by 103; in slot order. */
	ck_assert_uint_eq(rdma_leases_take_expired(&t, 103, out, 8), 4);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(out[i].slot, i);
	/* max bounds each call. */
	ck_assert_uint_eq(rdma_leases_take_expired(&t, 200, out, 2), 2);
	ck_assert_uint_eq(t.active, 4);
	ck_assert_uint_eq(rdma_leases_count(&t, &a), 2);
	ck_assert_uint_eq(rdma_leases_take_owner(&t, &a, out, 8), 2);
	ck_assert_uint_eq(out[0].slot % 2, 1);
	ck_assert_uint_eq(rdma_leases_take_owner(&t, &a, out, 8), 0);
	ck_assert_uint_eq(rdma_leases_take_owner(&t, NULL, out, 8), 2);
	ck_assert_uint_eq(t.active, 0);
	rdma_leases_release(&t);
}
END_TEST

/* A DESC that came after its asker gave up is answered with the RELEASE of its lease. */
START_TEST(test_release_for)
{
	struct rdma_msg d = { .type = RDMA_MSG_DESC, .req_id = 9, .u.desc = a_desc }, out;
	uint8_t buf[RDMA_MSG_MAX], rel[RDMA_MSG_MAX];
	size_t len = encode(buf, &d);
	ck_assert_int_eq(rdma_release_for(buf, len, rel, sizeof(rel)), RDMA_RELEASE_LEN);
	ck_assert_int_eq(rdma_msg_decode(rel, RDMA_RELEASE_LEN, &out), 0);
	ck_assert_uint_eq(out.type, RDMA_MSG_RELEASE);
	ck_assert_uint_eq(out.u.lease, a_desc.lease);
	/* An error status granted no lease; anything but a DESC is not ours to answer. */
	d.u.desc = (struct rdma_desc){ .status = EIO };
	len = encode(buf, &d);
	ck_assert_int_eq(rdma_release_for(buf, len, rel, sizeof(rel)), 0);
	ck_assert_int_eq(rdma_release_for(buf, len - 1, rel, sizeof(rel)), -EPROTO);
	struct rdma_msg r = { .type = RDMA_MSG_RELEASE, .u.lease = 5 };
	len = encode(buf, &r);
	ck_assert_int_eq(rdma_release_for(buf, len, rel, sizeof(rel)), -EPROTO);
	uint8_t ticket[34] = { 0x1b, 0x9e };
	ck_assert_int_eq(rdma_release_for(ticket, sizeof(ticket), rel, sizeof(rel)), -EPROTO);
}
END_TEST

/* The holder's side of the descriptor exchange on a node without RDMA: every DESC_REQ that
 * comes over a peer link is answered EOPNOTSUPP, a RELEASE is taken silently, and a message
 * that does not decode closes the link. */
START_TEST(test_answer_without_rdma)
{
	struct rdma_msg m = { .type = RDMA_MSG_DESC_REQ, .req_id = 42, .u.get = a_get,
			      .digest_kind = DIGEST_SHA256 }, out;
	uint8_t req[RDMA_MSG_MAX], ans[RDMA_MSG_MAX];
	size_t len = encode(req, &m);
	int owner;

	ck_assert_int_eq(rdma_ctx_answer(NULL, &owner, req, len, ans, sizeof(ans)),
			 RDMA_DESC_LEN);
	ck_assert_int_eq(rdma_msg_decode(ans, RDMA_DESC_LEN, &out), 0);
	ck_assert_uint_eq(out.type, RDMA_MSG_DESC);
	ck_assert_uint_eq(out.req_id, 42);
	ck_assert_int_eq(out.u.desc.status, EOPNOTSUPP);
	ck_assert_int_eq(rdma_ctx_answer(NULL, &owner, req, len, ans, RDMA_MSG_MAX - 1), -ENOSPC);
	ck_assert_int_eq(rdma_ctx_answer(NULL, &owner, req, len - 1, ans, sizeof(ans)), -EPROTO);
	/* A DESC is an answer, never a request. */
	struct rdma_msg d = { .type = RDMA_MSG_DESC, .req_id = 1, .u.desc = a_desc };
	len = encode(req, &d);
	ck_assert_int_eq(rdma_ctx_answer(NULL, &owner, req, len, ans, sizeof(ans)), -EPROTO);
	struct rdma_msg r = { .type = RDMA_MSG_RELEASE, .u.lease = 5 };
	len = encode(req, &r);
	ck_assert_int_eq(rdma_ctx_answer(NULL, &owner, req, len, ans, sizeof(ans)), 0);
	rdma_ctx_drop_owner(NULL, &owner);
}
END_TEST

/* On a node without RDMA (like this test host, usually) the caller learns ENODEV and why. */
START_TEST(test_ctx_no_device)
{
	struct mows_config cfg;
	struct rdma_host host = { 0 };
	static uint8_t slab[1 << 16] __attribute__((aligned(4096)));
	char err[512] = "";

	config_defaults(&cfg);
	snprintf(cfg.rdma_device, sizeof(cfg.rdma_device), "no-such-hca9");
	struct rdma_ctx *r = rdma_ctx_new(&cfg, slab, sizeof(slab), &host, err, sizeof(err));
	ck_assert_ptr_null(r);
	ck_assert_int_eq(errno, ENODEV);
	ck_assert_msg(strstr(err, "no-such-hca9") || strstr(err, "no RDMA device"), "%s", err);
	rdma_ctx_free(NULL);
}
END_TEST

/* The cache in files (no slab) is no reason to refuse RDMA: only the device is. */
START_TEST(test_ctx_files_mode_no_device)
{
	struct mows_config cfg;
	struct rdma_host host = { 0 };
	char err[512] = "";

	config_defaults(&cfg);
	snprintf(cfg.rdma_device, sizeof(cfg.rdma_device), "no-such-hca9");
	struct rdma_ctx *r = rdma_ctx_new(&cfg, NULL, 0, &host, err, sizeof(err));
	ck_assert_ptr_null(r);
	ck_assert_int_eq(errno, ENODEV);
	ck_assert_msg(!strstr(err, "slab"), "%s", err);
	rdma_ctx_forget(NULL, err, sizeof(err)); /* no context: nothing to forget */
}
END_TEST

static Suite *rdma_suite(void)
{
	Suite *s = suite_create("rdma");
	struct { const char *name; const TTest *t; } tests[] = {
		{ "desc_req_bytes", test_desc_req_bytes },
		{ "desc_bytes", test_desc_bytes },
		{ "release_bytes", test_release_bytes },
		{ "header_rules", test_header_rules },
		{ "desc_rules", test_desc_rules },
		{ "desc_req_rules", test_desc_req_rules },
		{ "garbage", test_garbage },
		{ "connect_priv", test_connect_priv },
		{ "accept_priv", test_accept_priv },
		{ "range_inside", test_range_inside },
		{ "leases_basic", test_leases_basic },
		{ "leases_full_and_reuse", test_leases_full_and_reuse },
		{ "leases_expiry_and_owner", test_leases_expiry_and_owner },
		{ "answer_without_rdma", test_answer_without_rdma },
		{ "release_for", test_release_for },
		{ "ctx_no_device", test_ctx_no_device },
		{ "ctx_files_mode_no_device", test_ctx_files_mode_no_device },
	};

	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++) {
		TCase *tc = tcase_create(tests[k].name);
		tcase_add_checked_fixture(tc, quiet, NULL);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, tests[k].t);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rdma_suite());

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
