/*
 * What the peer modules (net/peer.c, net/serve.c) share: the peers context. Not part of the
 * contract with the rest of the daemon (that is net/peer.h). Locking: THREADS.md.
 */
#ifndef MOWS_NET_PEER_PRIV_H
#define MOWS_NET_PEER_PRIV_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/gossip.h"
#include "net/link.h"
#include "net/member.h"
#include "net/peer.h"
#include "net/rdma.h"

#define PEER_QUARANTINE_MS 60000
#define PEER_IDLE_MS 60000         /* an authenticated inbound connection idle this long ends */
#define PEER_POOL_IDLE_MS 30000    /* a pooled outbound connection idle this long is closed */
#define SERVE_MAX_TICKETS 64
#define SERVE_UNAUTH_MAX 64        /* inbound connections still in their handshake: a cold
                                      * burst of N nodes sends each N - 1 at once */
#define SERVE_UNAUTH_PER_ADDR 4    /* of those, from one address */
#define SERVE_HANDSHAKE_MS 1500    /* an inbound handshake must finish this fast */
#define SERVE_CONN_INFLIGHT 32     /* requests of one connection queued or being served */

struct serve_job;
struct serve_worker;
enum { SERVE_FAST, SERVE_FILL, SERVE_PARK };
struct pf_table;
struct meta_share;
struct serve_io;

struct serve_ticket {
	uint8_t bytes[RDMA_TICKET_LEN];
	uint64_t expires_ns;      /* 0: free */
};

/* An inbound connection that has not authenticated yet (its serving thread owns the link). */
struct serve_pending {
	struct link *link;        /* NULL: free slot */
	struct in6_addr from;     /* IPv4 as v4-mapped */
	uint64_t since_ns;
	bool evicted;
};

/* At most one log line per interval for a noisy event, with a count of those left out. */
struct peer_ratelimit {
	uint64_t next_ns;
	unsigned suppressed;
};

struct peers {
	/* Set before the threads start, read-only afterwards. */
	const struct mows_config *cfg;
	struct cache *cache;
	struct peer_host_ops host;
	struct owners *owners;     /* balanced ownership in use (its own lock) */
	uint64_t start_ns;         /* mono_ns() at peers_new(): our age in HELLO */
#define PEER_OLDER_MS 3000      /* a member this much older than us may hold what we own */
	uint8_t *secret;
	size_t secret_len;
	char node_id[PROTO_NODE_ID_MAX + 1];
	uint64_t node_hash;
	uint16_t listen_port;
	uint32_t max_payload;      /* largest frame we accept once authenticated */
	bool corrupt_sends;        /* test-only fault: MOWS_TEST_CORRUPT_SENDS=1 */
	int listen_fd, stop_fd;
	struct rdma_ctx *rdma;     /* NULL: TCP only */
	struct link_self self;     /* what we say in handshakes */
	struct tls_ctx *tls;       /* NULL with tls = off; set before threads, then read-only */
	pthread_t listener, heartbeat;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t conn_cond;  /* a pooled connection came back, or stop */
	pthread_cond_t stop_cond;  /* stop, or a serving thread ended */
	pthread_cond_t wake_cond;  /* heartbeat: a peer failed, re-resolve now */
	struct members members;    /* protected by lock */
	unsigned nserving;         /* serving threads alive, protected by lock */
	unsigned nauth;            /* of them authenticated, protected by lock */
	unsigned nfetching;        /* fill threads inside peers_source, protected by lock */
	struct serve_pending pending[2 * SERVE_UNAUTH_MAX];   /* protected by lock */
	struct serve_ticket tickets[SERVE_MAX_TICKETS];       /* protected by lock */
	bool stopping;             /* protected by lock */
	/*
	 * GETs waiting for a worker, in two lanes (net/serve.c): SERVE_FAST for answers that
	 * cannot wait on storage (a chunk pinned at arrival, or no fill asked), SERVE_FILL for
	 * owner fills. Fast workers take only fast jobs, so a probe or a cached chunk never
	 * queues behind fills reading the backing. Protected by lock.
	 */
	struct serve_job *jobs[2], **jobs_tail[2];
	pthread_cond_t job_cond;   /* a job was queued, or the workers stop */
	bool workers_stop;         /* protected by lock */
	struct serve_worker *workers; /* the serve workers, set before they start */
	unsigned nworkers;
	bool resolve_now;          /* protected by lock */
	struct pf_table *pf;       /* prefetch jobs for peers (net/prefetch.c, its own lock) */
	struct serve_io *io;       /* authenticated inbound links (net/serve_io.c, its own lock) */
	struct meta_share *meta;   /* META_GET answerer (net/meta_share.h); set before start */
	uint64_t quarantines;      /* peers quarantined so far, protected by lock */
	/*
	 * The swarm (net/swarm.h). swarm: the owner's table (its own lock). parked: GET WAITs
	 * for chunks whose fill runs here, until the fill announces or ends (serve_fill_hook),
	 * and relays waiting for their source's next bytes (progress calls the same hook), or
	 * until their deadline (serve_sweep); at most SERVE_CONN_INFLIGHT per connection.
	 * Counters since start. All but swarm protected by lock.
	 */
	struct swarm *swarm;
	atomic_uint sending;       /* chunk sends (DATA with bytes, relays) in flight; atomic */
	struct serve_job *parked;
	unsigned nparked;
	struct peers_swarm_counters sw;
	uint64_t refused_unauth, refused_auth, accept_errors; /* protected by lock */
	/* Liveness gossip (net/gossip.h): our incarnation, the events to piggyback, counters
	 * (lv.suspects unused here). All protected by lock; gossip is set before start. */
	bool gossip;
	uint64_t self_inc;
	struct gossip_queue gq;
	struct peers_liveness lv;
	struct peer_ratelimit rl_refuse, rl_auth;             /* protected by lock */
};

/* net/serve.c (with net/serve_accept.c and net/serve_io.c): the listener, handshakes, the
 * inbound links' event loop and the serve workers. */
int serve_start(struct peers *p);
/* Answers parked GET WAITs whose deadline passed (heartbeat thread). */
void serve_sweep(struct peers *p);
/* Waits for the listener and for every serving thread (they end at stop_fd). */
void serve_stop(struct peers *p);
/* RDMA host callbacks for rdma_ctx_new(). */
bool serve_rdma_ticket_ok(void *ctx, const uint8_t ticket[RDMA_TICKET_LEN]);
int serve_rdma_pin(void *ctx, const struct proto_get *g, struct cache_span *span, uint32_t *crc);
void serve_rdma_unpin(void *ctx, struct cache_span *span);

/* net/peer.c: @m is down (its pooled connections are closed, logged with @why). No lock. */
void peers_mark_down(struct peers *p, struct member *m, const char *why);

/*
 * net/peer_gossip.c, for the heartbeat thread (net/peer.c):
 *   peers_hb_timeout_ms(): how long a heartbeat waits for its PONG: min(peer_timeout, 2 s);
 *     for a member we gossip with, max(heartbeat, peer_timeout / 4) if shorter.
 *   peers_ping_payload(): a PING or PONG payload for @to_id (whose HELLO said @caps) in @buf
 *     (PROTO_PING_MAX_LEN): with our gossip when both ends gossip. Takes the lock.
 *   peers_gossip_receive(): learns the gossip a PING or PONG from @from_id carried and
 *     marks down the members it says are dead or gone. Takes the lock.
 *   peers_do_heard_direct(): lock held; @node_id spoke to us itself just now.
 *   peers_ask_witnesses(): a heartbeat to @m failed; asks up to 3 other members (PING_REQ on
 *     their heartbeat links) whether @m spoke to them after @since. No lock held.
 *   peers_do_suspect(): lock held; suspects @m (and says so) if it was believed alive, the
 *     suspicion running from @since; returns whether it has run out.
 *   peers_declare_dead(): @m's suspicion ran out: dead here and, through gossip, everywhere.
 *   peers_check_suspects(): declares dead every member whose suspicion ran out.
 */
uint32_t peers_hb_timeout_ms(const struct peers *p, bool gossiping);
ssize_t peers_ping_payload(struct peers *p, const char *to_id, uint16_t caps,
			   const struct proto_ping *ping, uint8_t *buf);
void peers_gossip_receive(struct peers *p, const char *from_id, const struct proto_gossip *g);
void peers_do_heard_direct(struct peers *p, const char *node_id, uint64_t now);
bool peers_ask_witnesses(struct peers *p, struct member *m, uint64_t since);
bool peers_do_suspect(struct peers *p, struct member *m, uint64_t since, uint64_t now);
void peers_declare_dead(struct peers *p, struct member *m);
void peers_check_suspects(struct peers *p);

/*
 * net/peer_gossip.c, for the serving side: answers a PING of @len bytes at @ping from the peer
 * @from_id whose HELLO said @from_caps. Learns the gossip it carries and writes the PONG's
 * payload (with our gossip when the peer said PROTO_CAP_GOSSIP) to @out (PROTO_PING_MAX_LEN
 * bytes). Returns the payload length or -EPROTO. Takes peers->lock briefly; may mark members
 * down (closing their pooled connections) before it returns.
 */
ssize_t peers_pong(struct peers *p, const char *from_id, uint16_t from_caps, const void *ping,
		   uint32_t len, void *out);

/* net/peer_gossip.c, for the serving side: answers a PING_REQ (@len bytes at @req) from what this
 * node knows; writes PROTO_PING_REQ_ACK_LEN bytes to @out. Returns that length or -EPROTO. */
ssize_t peers_ping_req_answer(struct peers *p, const void *req, uint32_t len, void *out);

/* net/peer.c: a peer said LEAVE (from a serving thread). */
void peers_member_left(struct peers *p, const char *node_id);
/* net/peer.c: an authenticated inbound peer listening at @sa. Returns it referenced, or
 * NULL (ourselves, or the table is full). */
struct member *peers_inbound(struct peers *p, const char *node_id, const struct sockaddr *sa,
			     socklen_t len);

/*
 * net/peer.c, for net/prefetch.c. peers_live(): the live members for placement, referenced,
 * with this node last (ms[n - 1] NULL, hashes[n - 1] our hash); release with
 * peers_live_put(). peers_link_open(): an authenticated link to @m (see link_open).
 */
unsigned peers_live(struct peers *p, struct member ***ms, uint64_t **hashes);
void peers_live_put(struct peers *p, struct member **ms, uint64_t *hashes, unsigned n);
struct link *peers_link_open(struct peers *p, struct member *m, const struct deadline *dl,
			     int *rc);

/*
 * net/prefetch.c: jobs that fill this node's owned share of a file for PREFETCH requests
 * (ours or a peer's). pf_start() creates the table and its threads (PF_THREADS); pf_stop()
 * stops them (each ends within request_timeout) and frees every job.
 * pf_request() starts or polls the job of (@rq->run_id, @rq->file_key) and fills @st;
 * called from serving threads and from the thread running peers_prefetch_cluster().
 */
int pf_start(struct peers *p);
void pf_stop(struct peers *p);
void pf_request(struct peers *p, const struct proto_prefetch *rq,
		struct proto_prefetch_status *st);

#endif
