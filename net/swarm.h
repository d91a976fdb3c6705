/*
 * The swarm: an owner hands requesters of a chunk on to each other, so that nodes that want
 * one chunk at the same time form a tree instead of all queueing at the owner's uplink
 * (issue 7 item 4; the model is tools/mows-sim.c's plan_swarm).
 *
 * Definition. The owner of a chunk (the node asked for it with GET FILL) records, per
 * chunk, the requesters it answered, in arrival order. It serves a requester itself while
 * it is not busy (the larger of its sends in flight and its serves admitted, over all
 * chunks, is below SWARM_BUSY_SENDS; swarm_done() ends a serve) and serves fewer than
 * @fanout of the chunk's requesters; the first requester of a chunk it always serves.
 * Otherwise the requester is
 * assigned to an earlier recorded requester (busy: the one with the fewest children,
 * earliest among equals; not busy: the earliest with room) that has fewer than @fanout
 * assigned to it, and gets a REDIRECT naming it; the requester then asks that node with GET
 * WAIT (serve it when you hold it or when your own fill of it ends, else ENOENT at once)
 * and, when that fails or it has SWARM_PARENT_INFLIGHT requests in flight to that node
 * already (swarm_use_parent()), asks the owner again with NOREDIRECT, which the owner always
 * serves itself.
 *
 * Guarantees. A requester's parent arrived before it, so waits form a tree rooted at the
 * owner: no cycle. The owner sends a chunk to at most @fanout admitted requesters at once
 * (requesters that come back with NOREDIRECT are served too, uncounted), each parent gets at
 * most @fanout children. The owner's serves admitted at once are bounded by
 * SWARM_BUSY_SENDS plus one per chunk it is asked for first (NOREDIRECT ones aside). A
 * burst of requesters of one chunk that arrive while the owner still reads it is spread one
 * child per requester before any gets a second (a chain two wide: depth about half the
 * burst); requesters that come when the owner is idle again are served by the owner
 * (mows-sim --plan tree models the tree of fanout 4 the owner built before, when it counted
 * only sends in flight).
 *
 * Memory: a fixed table of SWARM_SETS x SWARM_WAYS chunk entries (about 350 bytes each,
 * ~360 KiB in all), least recently used entry of a set replaced; each entry records at most
 * SWARM_MAX_REQ requesters (more are served by the owner, not recorded). A forgotten entry
 * only means the owner serves more itself.
 *
 * Threads: swarm_admit() may be called from any thread; struct swarm has its own lock, a leaf
 * (THREADS.md). No I/O, no allocation after swarm_new().
 */
#ifndef MOWS_NET_SWARM_H
#define MOWS_NET_SWARM_H

#include <stdbool.h>
#include <stdint.h>

#define SWARM_FANOUT 4          /* default swarm_fanout: requesters a node serves per chunk */
#define SWARM_FANOUT_MAX 64
#define SWARM_SETS 256
#define SWARM_WAYS 4
#define SWARM_MAX_REQ 64
#define SWARM_BUSY_SENDS 2      /* chunk sends or owner serves at which an owner is busy */

struct swarm;

/* A table, empty. NULL with errno set. */
struct swarm *swarm_new(void);
void swarm_free(struct swarm *s);

/*
 * Requester @who (a nonzero member id, net/member.h uid) asks the owner for chunk @chunk of
 * file version @file_key. Returns false: the owner serves it; true: *@parent is the id of the
 * earlier requester to redirect it to. @fanout 0 turns the swarm off (always false). A
 * requester already recorded for the chunk is served (it asks again: it lost the chunk or its
 * parent failed it).
 *
 * The owner is busy when its uplink is taken already: it sends SWARM_BUSY_SENDS or more
 * chunks of any kind at this moment (@sends, net/serve.c), or it has admitted that many
 * requesters of any chunks to be served by itself and not yet seen their swarm_done() (a
 * serve that waits for the owner's own fill has not begun sending: when a burst of
 * requesters arrives at once, as when several nodes join and read the same shard, counting
 * sends alone found the owner idle and it served 6 of them at once, each at a sixth of its
 * uplink). Then the owner serves a chunk itself only to its first requester and hands every
 * later one to the earlier requester with the fewest children (the earliest of those; at
 * most @fanout each; served itself when every parent is full), so that a node that many ask
 * for many chunks at once (an old node when several nodes join a warm cluster) sends each
 * chunk about once, and the requesters, relaying while it arrives, carry it on a copy each
 * instead of the fastest requester carrying @fanout copies of every chunk. Waits still form
 * a tree rooted at the owner (deeper: a chain when requesters come one by one). An owner
 * that is not busy serves up to @fanout requesters of a chunk, but SWARM_BUSY_SENDS of them
 * make it busy.
 */
bool swarm_admit(struct swarm *s, uint64_t file_key, uint64_t chunk, uint32_t who,
		 unsigned fanout, unsigned sends, uint32_t *parent);

/* Requesters the owner admitted to serve itself and serves now, over every chunk. */
unsigned swarm_serving(struct swarm *s);

/* The owner's send of the chunk to @who (admitted to be served) ended, well or not. */
void swarm_done(struct swarm *s, uint64_t file_key, uint64_t chunk, uint32_t who);

#endif
