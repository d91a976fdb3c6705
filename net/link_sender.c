#include "net/link_sender.h"

#include <errno.h>

#include "net/link.h"
#include "net/proto.h"

/* A sender waiting for the turn, on its own stack, in s->q. */
struct link_sender_wait {
	struct link_sender_wait *next;
	bool granted;             /* the turn was handed to it, protected by s->lock */
};

int link_sender_init(struct link_sender *s, struct link *l)
{
	*s = (struct link_sender){ .link = l };
	if (deadline_cond_init(&s->cond))
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

void link_sender_release(struct link_sender *s)
{
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
}

/* Lock held. Takes @w out of the queue if it is there. */
static void do_dequeue(struct link_sender *s, struct link_sender_wait *w)
{
	for (struct link_sender_wait **pp = &s->q; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return;
		}
}

int link_sender_take(struct link_sender *s, const struct deadline *dl)
{
	int rc = 0;
	pthread_mutex_lock(&s->lock);
	if (!s->sending && !s->q) {
		s->sending = true;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	struct link_sender_wait w = { 0 }, **pp = &s->q;
	while (*pp)
		pp = &(*pp)->next;
	*pp = &w;
	while (!w.granted && rc == 0)
		rc = deadline_cond_wait(&s->cond, &s->lock, dl);
	if (w.granted)
		rc = 0; /* handed to us as our deadline passed: ours now */
	else
		do_dequeue(s, &w);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void link_sender_give(struct link_sender *s, int rc)
{
	pthread_mutex_lock(&s->lock);
	struct link_sender_wait *w = s->q;
	if (w) {
		s->q = w->next;
		w->granted = true; /* sending stays true: the turn goes straight to it */
	} else {
		s->sending = false;
	}
	if (rc)
		link_shutdown(s->link); /* part of a frame may have gone: the stream is lost */
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int link_sender_sendv(struct link_sender *s, struct iovec *iov, int n, const struct deadline *dl)
{
	int rc = link_sender_take(s, dl);
	if (rc)
		return rc;
	rc = link_sendv(s->link, iov, n, dl);
	link_sender_give(s, rc);
	return rc;
}

int link_sender_pieces(struct link_sender *s, uint32_t id, uint32_t crc, uint32_t len,
		       const uint8_t *data, uint32_t from, uint32_t to, uint32_t piece,
		       int64_t piece_ms)
{
	int rc = 0;
	uint32_t off = from;
	while (off < to && rc == 0) {
		struct deadline dl = deadline_in_ms(piece_ms);
		uint32_t n = to - off < piece ? to - off : piece;
		uint8_t head[PROTO_HDR_LEN + PROTO_PIECE_FIXED_LEN];
		struct proto_piece c = { .crc32 = crc, .length = len, .offset = off };
		proto_hdr_encode(head, PROTO_DATA_PIECE, 0, PROTO_PIECE_FIXED_LEN + n, id);
		proto_piece_encode(head + PROTO_HDR_LEN, &c);
		struct iovec iov[2] = { { head, sizeof(head) }, { (void *)(data + off), n } };
		rc = link_sender_sendv(s, iov, 2, &dl);
		off += rc == 0 ? n : 0;
	}
	if (rc && off > 0)
		link_shutdown(s->link);
	return rc;
}

int link_sender_abort(struct link_sender *s, uint32_t id, int status, uint32_t len,
		      uint32_t sent, const struct deadline *dl)
{
	uint8_t head[PROTO_HDR_LEN + PROTO_PIECE_FIXED_LEN];
	struct proto_piece c = { .status = status, .length = len, .offset = sent };
	proto_hdr_encode(head, PROTO_DATA_PIECE, 0, PROTO_PIECE_FIXED_LEN, id);
	proto_piece_encode(head + PROTO_HDR_LEN, &c);
	struct iovec iov = { head, sizeof(head) };
	int rc = link_sender_sendv(s, &iov, 1, dl);
	if (rc)
		link_shutdown(s->link);
	return rc;
}
