/*
 * The swarm: an owner hands requesters of a chunk on to each other, so that nodes that want
 * one chunk at the same time form a tree instead of all queueing at the owner's uplink
 * (issue 7 item 4; tools/mows-sim.c runs this code in its fleet model).
 *
 * Definition. The owner of a chunk (the node asked for it with GET FILL) records, per
 * chunk, the requesters it answered, in arrival order. It serves a requester itself while
 * it serves fewer than @fanout of them at that moment (swarm_done() ends one). Otherwise the
 * requester is assigned to the earliest recorded requester that has fewer than @fanout
 * assigned to it, and gets a REDIRECT naming it; the requester then asks that node
 * with GET WAIT (serve it when you hold it or when your own fill of it ends, else ENOENT at
 * once) and, when that fails, asks the owner again with NOREDIRECT, which the owner always
 * serves itself.
 *
 * Guarantees. A requester's parent arrived before it, so waits form a tree rooted at the
 * owner: no cycle. The owner sends a chunk to at most @fanout admitted requesters at once
 * (requesters that come back with NOREDIRECT are served too, uncounted), each parent gets at
 * most @fanout children. A burst of 16 requesters of one chunk that arrive while the owner
 * still reads it is at most two levels deep with fanout 4; requesters that come when the
 * owner is idle again are served by the owner.
 *
 * Memory: a fixed table of SWARM_SETS x SWARM_WAYS chunk entries (about 350 bytes each,
 * ~360 KiB in all), least recently used entry of a set replaced; each entry records at most
 * SWARM_MAX_REQ requesters. Later ones form a chain behind the last recorded, each handed
 * to the one that came before it (only the chain's last link is remembered, so it is served
 * when it asks again; a parent still arrived before its child). A forgotten entry only
 * means the owner serves more itself.
 *
 * Threads: swarm_admit() may be called from any thread; struct swarm has its own lock, a leaf
 * (THREADS.md). No I/O, no allocation after swarm_new().
 */
#ifndef MOWS_NET_SWARM_H
#define MOWS_NET_SWARM_H

#include <stdbool.h>
#include <stdint.h>

#define SWARM_FANOUT_MAX 64
#define SWARM_SETS 256
#define SWARM_WAYS 4
#define SWARM_MAX_REQ 64
#define SWARM_BUSY_SENDS 2      /* chunk sends in flight at which an owner is busy */

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
 * @busy: the owner's uplink is taken already (it sends SWARM_BUSY_SENDS or more chunks, of
 * any kind, at this moment; net/serve.c). Then the owner serves a chunk itself only to its
 * first requester and hands every later one to the earlier requester with the fewest
 * children (the earliest of those; at most @fanout each; served itself when every parent is
 * full), so that a node that many ask for many chunks at once (an old node when several
 * nodes join a warm cluster) sends each chunk about once, and the requesters, relaying while
 * it arrives, carry it on a copy each instead of the fastest requester carrying @fanout
 * copies of every chunk. Waits still form a tree rooted at the owner (deeper: a chain when
 * requesters come one by one).
 */
bool swarm_admit(struct swarm *s, uint64_t file_key, uint64_t chunk, uint32_t who,
		 unsigned fanout, bool busy, uint32_t *parent);

/* The owner's send of the chunk to @who (admitted to be served) ended, well or not. */
void swarm_done(struct swarm *s, uint64_t file_key, uint64_t chunk, uint32_t who);

#endif
