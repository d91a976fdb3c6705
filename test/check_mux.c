/*
 * Pins net/mux.h over a socketpair with a scripted server: many requests share one link and
 * each gets its own answer though the server answers in reverse order; a request that timed
 * out leaves, and its late answer is read away without harming the next; a closed stream
 * fails every waiter. Small RDMA_DESC calls share the link with GETs, and an answer that
 * comes after its asker left goes to the orphan handler, which may send on the mux.
 * Answers in DATA_PIECEs: two answers interleaved piece by piece both arrive right; a gone
 * asker's later pieces are read away; an answer that ends with an EIO piece fails only its
 * own request; a piece for no request, out of order, or a truncated answer breaks the mux.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/crc.h"
#include "common/deadline.h"
#include "net/link.h"
#include "net/mux.h"
#include "net/proto.h"

#define LEN 65536u
#define K 8

static int srv_fd;

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void fill(uint8_t *b, uint64_t chunk)
{
	for (unsigned i = 0; i < LEN; i++)
		b[i] = (uint8_t)(chunk * 31 + i);
}

static void read_get(struct link *l, uint32_t *id, uint64_t *chunk)
{
	struct deadline dl = deadline_in_ms(5000);
	uint8_t buf[PROTO_GET_LEN];
	struct proto_hdr h;
	struct proto_get g;
	ck_assert_int_eq(link_recv_frame(l, &h, buf, sizeof(buf), &dl), 0);
	ck_assert_int_eq(h.type, PROTO_GET);
	ck_assert_int_eq(proto_get_decode(buf, h.len, &g), 0);
	*id = h.req_id;
	*chunk = g.chunk;
}

static void send_data(struct link *l, uint32_t id, uint64_t chunk)
{
	static uint8_t b[LEN];
	uint8_t head[PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN];
	fill(b, chunk);
	struct proto_data d = { .crc32 = mows_crc32(0, b, LEN), .length = LEN };
	proto_hdr_encode(head, PROTO_DATA, 0, PROTO_DATA_FIXED_LEN + LEN, id);
	proto_data_encode(head + PROTO_HDR_LEN, &d);
	struct iovec iov[2] = { { head, sizeof(head) }, { b, LEN } };
	struct deadline dl = deadline_in_ms(5000);
	ck_assert_int_eq(link_sendv(l, iov, 2, &dl), 0);
}

/* Reads K GETs, then answers them last first. */
static void *reverse_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	uint32_t ids[K];
	uint64_t chunks[K];
	for (int i = 0; i < K; i++)
		read_get(l, &ids[i], &chunks[i]);
	for (int i = K - 1; i >= 0; i--)
		send_data(l, ids[i], chunks[i]);
	usleep(200000);
	link_free(l);
	return NULL;
}

struct client {
	struct mux *x;
	uint64_t chunk;
	unsigned timeout_ms;
	int rc;
	uint8_t buf[LEN];
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct transport_chunk_req req = { .file_key = 1, .file_size = 1 << 30, .chunk = c->chunk,
					   .chunk_size = LEN };
	struct deadline dl = deadline_in_ms(c->timeout_ms ? c->timeout_ms : 5000);
	uint32_t crc = 0;
	c->rc = mux_fetch(c->x, &req, c->buf, LEN, &crc, &dl);
	if (c->rc == 0 && crc != mows_crc32(0, c->buf, LEN))
		c->rc = -EBADMSG;
	return NULL;
}

/* Joins @t, the thread of client @c, which must have got its chunk, byte for byte. */
static void join_right(pthread_t t, const struct client *c)
{
	uint8_t want[LEN];
	pthread_join(t, NULL);
	ck_assert_int_eq(c->rc, 0);
	fill(want, c->chunk);
	ck_assert(memcmp(want, c->buf, LEN) == 0);
}

static struct mux *pair(void)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	nonblock(sv[0]);
	nonblock(sv[1]);
	srv_fd = sv[1];
	struct mux *x = mux_new(link_new(sv[0]), PROTO_DATA_FIXED_LEN + LEN, 5000);
	ck_assert_ptr_nonnull(x);
	return x;
}

START_TEST(answers_out_of_order)
{
	static struct client c[K];
	pthread_t t[K], srv;
	struct mux *x = pair();
	ck_assert_int_eq(pthread_create(&srv, NULL, reverse_server, NULL), 0);
	for (int i = 0; i < K; i++) {
		c[i] = (struct client){ .x = x, .chunk = 100 + (uint64_t)i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
	}
	for (int i = 0; i < K; i++)
		join_right(t[i], &c[i]);
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

/* Answers the first GET late (after its asker gave up), then the second. */
static void *late_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	uint32_t id1, id2;
	uint64_t ch1, ch2;
	read_get(l, &id1, &ch1);
	usleep(400000);
	read_get(l, &id2, &ch2);
	send_data(l, id1, ch1);
	send_data(l, id2, ch2);
	usleep(200000);
	link_free(l);
	return NULL;
}

START_TEST(late_answer_is_read_away)
{
	static struct client a, b;
	pthread_t ta, tb, srv;
	struct mux *x = pair();
	ck_assert_int_eq(pthread_create(&srv, NULL, late_server, NULL), 0);
	a = (struct client){ .x = x, .chunk = 1, .timeout_ms = 200 };
	ck_assert_int_eq(pthread_create(&ta, NULL, client_main, &a), 0);
	pthread_join(ta, NULL);
	ck_assert_int_eq(a.rc, -ETIMEDOUT);
	b = (struct client){ .x = x, .chunk = 2 };
	ck_assert_int_eq(pthread_create(&tb, NULL, client_main, &b), 0);
	join_right(tb, &b);
	ck_assert(!mux_broken(x));
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

static void *closing_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	uint32_t id;
	uint64_t ch;
	for (int i = 0; i < 3; i++)
		read_get(l, &id, &ch);
	link_free(l);
	return NULL;
}

START_TEST(closed_stream_fails_every_waiter)
{
	static struct client c[3];
	pthread_t t[3], srv;
	struct mux *x = pair();
	ck_assert_int_eq(pthread_create(&srv, NULL, closing_server, NULL), 0);
	for (int i = 0; i < 3; i++) {
		c[i] = (struct client){ .x = x, .chunk = (uint64_t)i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_lt(c[i].rc, 0);
		ck_assert_int_ne(c[i].rc, -ETIMEDOUT); /* it failed at once, not by deadline */
	}
	ck_assert(mux_broken(x));
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

/* ---- small RDMA_DESC calls (net/rdma.h descriptors) beside GETs ---- */

static char orphan_seen[16];

/* Reads one RDMA_DESC frame; returns its request id and copies its payload. */
static uint32_t read_desc(struct link *l, char *payload, uint32_t cap)
{
	struct deadline dl = deadline_in_ms(5000);
	struct proto_hdr h;
	memset(payload, 0, cap);
	ck_assert_int_eq(link_recv_frame(l, &h, payload, cap - 1, &dl), 0);
	ck_assert_int_eq(h.type, PROTO_RDMA_DESC);
	return h.req_id;
}

static void send_desc(struct link *l, uint32_t id, const char *payload)
{
	struct deadline dl = deadline_in_ms(5000);
	ck_assert_int_eq(link_send_frame(l, PROTO_RDMA_DESC, id, payload,
					 (uint32_t)strlen(payload), &dl), 0);
}

/*
 * Answers call "one" at once; answers call "late" only after its asker left, then a GET;
 * then expects the frame the orphan handler sent about the late answer.
 */
static void *desc_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	char p[32];
	uint32_t id = read_desc(l, p, sizeof(p));
	ck_assert_str_eq(p, "one");
	send_desc(l, id, "answer-one");
	uint32_t late = read_desc(l, p, sizeof(p));
	ck_assert_str_eq(p, "late");
	uint32_t gid;
	uint64_t ch;
	read_get(l, &gid, &ch);
	send_desc(l, late, "lease-7");
	send_data(l, gid, ch);
	id = read_desc(l, p, sizeof(p));
	ck_assert_uint_eq(id, 0);
	ck_assert_str_eq(p, "release-7");
	link_free(l);
	return NULL;
}

static void on_orphan(struct mux *x, const void *msg, size_t len)
{
	struct deadline dl = deadline_in_ms(1000);
	memcpy(orphan_seen, msg, len < sizeof(orphan_seen) - 1 ? len : sizeof(orphan_seen) - 1);
	if (len == 7 && !memcmp(msg, "lease-7", 7))
		ck_assert_int_eq(mux_send(x, PROTO_RDMA_DESC, "release-7", 9, &dl), 0);
}

START_TEST(calls_and_orphans)
{
	static struct client b;
	pthread_t tb, srv;
	struct mux *x = pair();
	mux_set_orphan(x, on_orphan);
	ck_assert_int_eq(pthread_create(&srv, NULL, desc_server, NULL), 0);
	char ans[32] = "";
	size_t n = 0;
	struct deadline dl = deadline_in_ms(5000);
	ck_assert_int_eq(mux_call(x, PROTO_RDMA_DESC, "one", 3, ans, sizeof(ans), &n, &dl), 0);
	ck_assert_uint_eq(n, 10);
	ck_assert(!memcmp(ans, "answer-one", 10));
	/* Only RDMA_DESC calls exist. */
	ck_assert_int_eq(mux_call(x, PROTO_GET, "x", 1, ans, sizeof(ans), &n, &dl), -EINVAL);
	dl = deadline_in_ms(200);
	ck_assert_int_eq(mux_call(x, PROTO_RDMA_DESC, "late", 4, ans, sizeof(ans), &n, &dl),
			 -ETIMEDOUT);
	b = (struct client){ .x = x, .chunk = 5 };
	ck_assert_int_eq(pthread_create(&tb, NULL, client_main, &b), 0);
	pthread_join(tb, NULL);
	ck_assert_int_eq(b.rc, 0);
	pthread_join(srv, NULL);
	ck_assert_str_eq(orphan_seen, "lease-7");
	ck_assert(!mux_broken(x));
	mux_put(x);
}
END_TEST

/* ---- answers in DATA_PIECEs ---- */

/* Sends bytes [from, to) of chunk @chunk's answer as one piece (status 0). */
static void send_piece(struct link *l, uint32_t id, uint64_t chunk, uint32_t from, uint32_t to)
{
	static uint8_t b[LEN];
	uint8_t head[PROTO_HDR_LEN + PROTO_PIECE_FIXED_LEN];
	fill(b, chunk);
	struct proto_piece c = { .crc32 = mows_crc32(0, b, LEN), .length = LEN, .offset = from };
	proto_hdr_encode(head, PROTO_DATA_PIECE, 0, PROTO_PIECE_FIXED_LEN + (to - from), id);
	proto_piece_encode(head + PROTO_HDR_LEN, &c);
	struct iovec iov[2] = { { head, sizeof(head) }, { b + from, to - from } };
	struct deadline dl = deadline_in_ms(5000);
	ck_assert_int_eq(link_sendv(l, iov, 2, &dl), 0);
}

/* Ends an answer with @status at @offset (no bytes). */
static void send_abort(struct link *l, uint32_t id, int status, uint32_t offset)
{
	uint8_t buf[PROTO_PIECE_FIXED_LEN];
	struct proto_piece c = { .status = status, .length = LEN, .offset = offset };
	proto_piece_encode(buf, &c);
	struct deadline dl = deadline_in_ms(5000);
	ck_assert_int_eq(link_send_frame(l, PROTO_DATA_PIECE, id, buf, sizeof(buf), &dl), 0);
}

/* Reads two GETs and answers them in pieces of different sizes, alternating. */
static void *interleave_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	uint32_t id[2];
	uint64_t ch[2];
	read_get(l, &id[0], &ch[0]);
	read_get(l, &id[1], &ch[1]);
	uint32_t at[2] = { 0, 0 }, step[2] = { 4096, 10000 };
	while (at[0] < LEN || at[1] < LEN)
		for (int i = 0; i < 2; i++) {
			uint32_t to = at[i] + step[i] < LEN ? at[i] + step[i] : LEN;
			if (at[i] < LEN)
				send_piece(l, id[i], ch[i], at[i], to);
			at[i] = to;
		}
	usleep(200000);
	link_free(l);
	return NULL;
}

START_TEST(pieces_interleave)
{
	static struct client c[2];
	pthread_t t[2], srv;
	struct mux *x = pair();
	ck_assert_int_eq(pthread_create(&srv, NULL, interleave_server, NULL), 0);
	for (int i = 0; i < 2; i++) {
		c[i] = (struct client){ .x = x, .chunk = 40 + (uint64_t)i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		join_right(t[i], &c[i]);
	ck_assert(!mux_broken(x));
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

/* One piece of the first answer, then (its asker gone) the rest, then an EIO piece ends
 * the second answer halfway, then the third answer whole in pieces. */
static void *gone_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	uint32_t id1, id2, id3;
	uint64_t ch1, ch2, ch3;
	read_get(l, &id1, &ch1);
	send_piece(l, id1, ch1, 0, 1000);
	read_get(l, &id2, &ch2); /* sent once the first asker left */
	send_piece(l, id1, ch1, 1000, 30000);
	send_piece(l, id2, ch2, 0, 20000);
	send_piece(l, id1, ch1, 30000, LEN);
	send_abort(l, id2, EIO, 20000);
	read_get(l, &id3, &ch3);
	send_piece(l, id3, ch3, 0, LEN / 2);
	send_piece(l, id3, ch3, LEN / 2, LEN);
	usleep(200000);
	link_free(l);
	return NULL;
}

START_TEST(gone_asker_pieces_read_away)
{
	static struct client a, b, c;
	pthread_t ta, tb, tc, srv;
	struct mux *x = pair();
	ck_assert_int_eq(pthread_create(&srv, NULL, gone_server, NULL), 0);
	a = (struct client){ .x = x, .chunk = 1, .timeout_ms = 200 };
	ck_assert_int_eq(pthread_create(&ta, NULL, client_main, &a), 0);
	pthread_join(ta, NULL);
	ck_assert_int_eq(a.rc, -ETIMEDOUT);
	b = (struct client){ .x = x, .chunk = 2 };
	ck_assert_int_eq(pthread_create(&tb, NULL, client_main, &b), 0);
	pthread_join(tb, NULL);
	ck_assert_int_eq(b.rc, -EIO); /* its answer ended with an EIO piece */
	ck_assert(!mux_broken(x));
	c = (struct client){ .x = x, .chunk = 3 };
	ck_assert_int_eq(pthread_create(&tc, NULL, client_main, &c), 0);
	join_right(tc, &c);
	ck_assert(!mux_broken(x));
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

/* What the bad-piece server does after reading one GET. */
enum bad_piece { BAD_UNKNOWN_ID, BAD_OUT_OF_ORDER, BAD_NOT_FIRST, BAD_OTHER_CRC, BAD_TRUNCATED };

static void *bad_piece_server(void *arg)
{
	enum bad_piece how = (enum bad_piece)(intptr_t)arg;
	struct link *l = link_new(srv_fd);
	uint32_t id;
	uint64_t ch;
	read_get(l, &id, &ch);
	if (how == BAD_UNKNOWN_ID) {
		send_piece(l, id + 1000, ch, 0, 100);
	} else if (how == BAD_NOT_FIRST) {
		send_piece(l, id, ch, 100, 200);
	} else {
		send_piece(l, id, ch, 0, 100);
		if (how == BAD_OUT_OF_ORDER)
			send_piece(l, id, ch, 200, 300);
		else if (how == BAD_OTHER_CRC)
			send_piece(l, id, ch + 1, 100, 200); /* another chunk's CRC */
	}
	/* A truncated answer: the stream ends mid-answer. Otherwise the stream stays open until
	 * the client breaks it (or well past the client's deadline). */
	if (how == BAD_TRUNCATED)
		usleep(100000);
	else
		link_wait_readable(l, -1, 4000);
	link_free(l);
	return NULL;
}

START_TEST(bad_piece_breaks_mux)
{
	static struct client c;
	pthread_t tc, srv;
	struct mux *x = pair();
	ck_assert_int_eq(pthread_create(&srv, NULL, bad_piece_server, (void *)(intptr_t)_i), 0);
	c = (struct client){ .x = x, .chunk = 9, .timeout_ms = 2000 };
	ck_assert_int_eq(pthread_create(&tc, NULL, client_main, &c), 0);
	pthread_join(tc, NULL);
	ck_assert_int_lt(c.rc, 0);
	ck_assert_int_ne(c.rc, -ETIMEDOUT); /* it failed at once, not by deadline */
	ck_assert(mux_broken(x));
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

/* A node that did not say PIECES takes none, as an older node could not. */
static void *one_piece_server(void *arg)
{
	(void)arg;
	struct link *l = link_new(srv_fd);
	uint32_t id;
	uint64_t ch;
	read_get(l, &id, &ch);
	send_piece(l, id, ch, 0, LEN);
	link_wait_readable(l, -1, 4000);
	link_free(l);
	return NULL;
}

START_TEST(no_pieces_unless_said)
{
	static struct client c;
	pthread_t tc, srv;
	struct mux *x = pair();
	mux_set_pieces(x, false);
	ck_assert_int_eq(pthread_create(&srv, NULL, one_piece_server, NULL), 0);
	c = (struct client){ .x = x, .chunk = 4, .timeout_ms = 2000 };
	ck_assert_int_eq(pthread_create(&tc, NULL, client_main, &c), 0);
	pthread_join(tc, NULL);
	ck_assert_int_lt(c.rc, 0);
	ck_assert_int_ne(c.rc, -ETIMEDOUT);
	ck_assert(mux_broken(x));
	pthread_join(srv, NULL);
	mux_put(x);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mux");
	TCase *tc = tcase_create("mux");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, answers_out_of_order);
	tcase_add_test(tc, late_answer_is_read_away);
	tcase_add_test(tc, closed_stream_fails_every_waiter);
	tcase_add_test(tc, calls_and_orphans);
	tcase_add_test(tc, pieces_interleave);
	tcase_add_test(tc, gone_asker_pieces_read_away);
	tcase_add_loop_test(tc, bad_piece_breaks_mux, BAD_UNKNOWN_ID, BAD_TRUNCATED + 1);
	tcase_add_test(tc, no_pieces_unless_said);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
