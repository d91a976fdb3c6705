/* The owner's swarm table: see net/swarm.h. */
#include "net/swarm.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/hash.h"

struct swarm_entry {
	uint64_t file_key, chunk;
	uint64_t used;                 /* LRU tick; 0: free */
	uint8_t n;                     /* requesters recorded */
	uint8_t serving;               /* of them, the owner is serving now */
	uint32_t who[SWARM_MAX_REQ];   /* in arrival order */
	uint8_t kids[SWARM_MAX_REQ];   /* requesters assigned to who[i] */
	bool active[SWARM_MAX_REQ];    /* the owner is serving who[i] now */
	uint32_t tail;                 /* past SWARM_MAX_REQ: the last requester handed on */
};

struct swarm {
	pthread_mutex_t lock;
	uint64_t tick;                 /* protected by lock */
	struct swarm_entry e[SWARM_SETS][SWARM_WAYS]; /* protected by lock */
};

struct swarm *swarm_new(void)
{
	struct swarm *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void swarm_free(struct swarm *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static unsigned set_of(uint64_t key, uint64_t chunk)
{
	return (unsigned)(fmix64(key ^ fmix64(chunk + 1)) % SWARM_SETS);
}

/* Lock held. The entry of (@key, @chunk), made afresh over the set's oldest if need be. */
static struct swarm_entry *do_entry(struct swarm *s, uint64_t key, uint64_t chunk)
{
	struct swarm_entry *set = s->e[set_of(key, chunk)];
	struct swarm_entry *old = &set[0];
	for (unsigned w = 0; w < SWARM_WAYS; w++) {
		struct swarm_entry *x = &set[w];
		if (x->used && x->file_key == key && x->chunk == chunk) {
			x->used = ++s->tick;
			return x;
		}
		if (x->used < old->used)
			old = x;
	}
	*old = (struct swarm_entry){ .file_key = key, .chunk = chunk, .used = ++s->tick };
	return old;
}

/* Lock held. Records @who at the end of @x's arrival order; @serving: the owner serves it. */
static void do_record(struct swarm_entry *x, uint32_t who, bool serving)
{
	x->kids[x->n] = 0;
	x->active[x->n] = serving;
	x->serving += serving;
	x->who[x->n++] = who;
}

/* Lock held. Returns 1: redirect to *@parent; 0: the owner serves it (counted); -1: the owner
 * serves it, not counted (a requester asking again, or a full entry). */
static int do_admit(struct swarm_entry *x, uint32_t who, unsigned fanout, bool busy,
		    uint32_t *parent)
{
	for (unsigned i = 0; i < x->n; i++)
		if (x->who[i] == who)
			return -1;
	if (x->n == SWARM_MAX_REQ) {
		/* Past the record the requesters form a chain, each handed to the one before
		 * it (the first to the last recorded): the owner's uplink still sends the chunk
		 * about once, however many nodes ask (hundreds in a cold burst of a fleet). Only
		 * the last link is remembered: it is served when it asks again. */
		if (who == x->tail)
			return -1;
		*parent = x->tail ? x->tail : x->who[x->n - 1];
		x->tail = who;
		return 1;
	}
	if (busy ? x->n == 0 : x->serving < fanout) {
		do_record(x, who, true);
		return 0;
	}
	unsigned best = x->n;
	for (unsigned i = 0; i < x->n; i++)
		if (x->kids[i] < fanout && (best == x->n || x->kids[i] < x->kids[best])) {
			best = i;
			if (!busy || !x->kids[i])
				break; /* earliest with room; busy: earliest with fewest children */
		}
	if (best == x->n)
		return -1;
	x->kids[best]++;
	*parent = x->who[best];
	do_record(x, who, false);
	return 1;
}

bool swarm_admit(struct swarm *s, uint64_t file_key, uint64_t chunk, uint32_t who,
		 unsigned fanout, bool busy, uint32_t *parent)
{
	if (!fanout || !who)
		return false;
	if (fanout > SWARM_FANOUT_MAX)
		fanout = SWARM_FANOUT_MAX;
	pthread_mutex_lock(&s->lock);
	bool redirect = do_admit(do_entry(s, file_key, chunk), who, fanout, busy, parent) == 1;
	pthread_mutex_unlock(&s->lock);
	return redirect;
}

void swarm_done(struct swarm *s, uint64_t file_key, uint64_t chunk, uint32_t who)
{
	if (!who)
		return;
	pthread_mutex_lock(&s->lock);
	struct swarm_entry *set = s->e[set_of(file_key, chunk)];
	for (unsigned w = 0; w < SWARM_WAYS; w++) {
		struct swarm_entry *x = &set[w];
		if (!x->used || x->file_key != file_key || x->chunk != chunk)
			continue;
		for (unsigned i = 0; i < x->n; i++)
			if (x->who[i] == who && x->active[i]) {
				x->active[i] = false;
				x->serving--;
			}
	}
	pthread_mutex_unlock(&s->lock);
}
