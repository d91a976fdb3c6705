/*
 * The transport seam: how chunk bytes move between peers.
 *
 * Semantics follow RDMA (net/rdma.c, next): the serving node exposes chunks that sit in its
 * slab, the requester reads (offset, length) of a remote chunk straight into its own slot,
 * and the server keeps the chunk pinned until that read is done. Over TCP the "read" is a
 * GET answered by a DATA frame that the requester receives directly into its slot, and the
 * server sends from its pinned slab memory without copying.
 *
 * Connections are made, authenticated and kept by net/peer.c over TCP; a transport turns an
 * authenticated connection into chunk reads. Each connection is used by one thread at a time.
 */
#ifndef MOWS_NET_TRANSPORT_H
#define MOWS_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/deadline.h"
#include "net/proto.h"

struct transport_conn;

struct transport_chunk_req {
	uint64_t file_key;
	uint64_t file_size;
	int64_t mtime_ns;
	uint64_t chunk;
	uint32_t chunk_size;
	bool fill;            /* we ask the chunk's owner: fill it from your backing if need be */
	bool wait;            /* we ask a holder an owner named: wait for your fill (swarm) */
	bool noredirect;      /* with fill: serve it yourself, no REDIRECT (swarm) */
};

/* The GET frame's payload that asks for @req: one mapping for every transport. */
static inline struct proto_get transport_req_get(const struct transport_chunk_req *req)
{
	return (struct proto_get){
		.file_key = req->file_key,
		.file_size = req->file_size,
		.mtime_ns = req->mtime_ns,
		.chunk = req->chunk,
		.chunk_size = req->chunk_size,
		.flags = (req->fill ? PROTO_GET_FILL : 0) | (req->wait ? PROTO_GET_WAIT : 0) |
			 (req->noredirect ? PROTO_GET_NOREDIRECT : 0),
	};
}

struct transport_ops {
	const char *name;
	/*
	 * Reads the chunk @req names from the peer into @dst (@len bytes expected) and sets
	 * *@crc to the CRC the peer sent with it (the caller checks it). Returns 0, -ENOENT
	 * when the peer does not hold it (and was not asked to fill), -EIO when the peer
	 * failed, or another -errno; after any error but -ENOENT and -EIO the connection is
	 * broken and must be closed. Never waits past @dl.
	 */
	int (*fetch)(struct transport_conn *conn, const struct transport_chunk_req *req,
		     void *dst, size_t len, uint32_t *crc, const struct deadline *dl);
	/* Closes the connection and frees it. */
	void (*close)(struct transport_conn *conn);
};

#endif
