/* The mows peer wire protocol: see proto.h. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "common/hash.h"
#include "net/proto.h"

/* errno values are below 4096 (the kernel's MAX_ERRNO); anything else is not a status. */
#define PROTO_STATUS_MAX 4095

struct type_info {
	const char *name;
	uint32_t min_len;
	uint32_t max_len;
};

static const struct type_info type_info[PROTO_TYPE_MAX + 1] = {
	[PROTO_HELLO] = { "HELLO", PROTO_HELLO_FIXED_LEN + 1, PROTO_HELLO_MAX_LEN },
	[PROTO_AUTH] = { "AUTH", PROTO_AUTH_LEN, PROTO_AUTH_LEN },
	[PROTO_AUTH_OK] = { "AUTH_OK", 0, 0 },
	[PROTO_AUTH_FAIL] = { "AUTH_FAIL", 0, 0 },
	[PROTO_PING] = { "PING", PROTO_PING_LEN, PROTO_PING_MAX_LEN },
	[PROTO_PONG] = { "PONG", PROTO_PING_LEN, PROTO_PING_MAX_LEN },
	[PROTO_GET] = { "GET", PROTO_GET_LEN, PROTO_GET_LEN },
	[PROTO_DATA] = { "DATA", PROTO_DATA_FIXED_LEN, UINT32_MAX },
	[PROTO_RDMA_DESC] = { "RDMA_DESC", 0, PROTO_RDMA_MSG_MAX },
	[PROTO_LEAVE] = { "LEAVE", 0, 0 },
	[PROTO_PREFETCH] = { "PREFETCH", PROTO_PREFETCH_LEN, PROTO_PREFETCH_LEN },
	[PROTO_PREFETCH_STATUS] = { "PREFETCH_STATUS", PROTO_PREFETCH_STATUS_LEN,
				    PROTO_PREFETCH_STATUS_LEN },
	[PROTO_META_GET] = { "META_GET", PROTO_META_GET_LEN, PROTO_META_GET_LEN },
	[PROTO_META] = { "META", PROTO_META_FIXED_LEN,
			 PROTO_META_FIXED_LEN + PROTO_META_PIECE_MAX },
	[PROTO_REDIRECT] = { "REDIRECT", 2, PROTO_REDIRECT_MAX_LEN },
	[PROTO_PING_REQ] = { "PING_REQ", 2, PROTO_PING_REQ_MAX_LEN },
	[PROTO_PING_REQ_ACK] = { "PING_REQ_ACK", PROTO_PING_REQ_ACK_LEN, PROTO_PING_REQ_ACK_LEN },
	[PROTO_DATA_PIECE] = { "DATA_PIECE", PROTO_PIECE_FIXED_LEN, UINT32_MAX },
};

const char *proto_type_name(uint8_t type)
{
	if (type > PROTO_TYPE_MAX || !type_info[type].name)
		return "?";
	return type_info[type].name;
}

static bool node_id_char_ok(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

static bool node_id_bytes_ok(const uint8_t *p, size_t len)
{
	if (len < 1 || len > PROTO_NODE_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!node_id_char_ok(p[i]))
			return false;
	return true;
}

bool proto_node_id_ok(const char *id)
{
	if (!id)
		return false;
	return node_id_bytes_ok((const uint8_t *)id, strnlen(id, PROTO_NODE_ID_MAX + 1));
}

void proto_hdr_encode(void *buf, uint8_t type, uint16_t flags, uint32_t len, uint32_t req_id)
{
	struct proto_wire_hdr w = {
		.magic = htobe32(PROTO_MAGIC),
		.version = PROTO_VERSION,
		.type = type,
		.flags = htobe16(flags),
		.len = htobe32(len),
		.req_id = htobe32(req_id),
	};

	memcpy(buf, &w, sizeof(w));
}

int proto_hdr_decode(const void *buf, size_t len, struct proto_hdr *out, uint32_t max_payload)
{
	struct proto_wire_hdr w;

	if (len < sizeof(w))
		return -EAGAIN;
	memcpy(&w, buf, sizeof(w));
	if (be32toh(w.magic) != PROTO_MAGIC || w.version != PROTO_VERSION)
		return -EPROTO;
	if (w.type == 0 || w.type > PROTO_TYPE_MAX || w.flags != 0)
		return -EPROTO;
	out->version = w.version;
	out->type = w.type;
	out->flags = be16toh(w.flags);
	out->len = be32toh(w.len);
	out->req_id = be32toh(w.req_id);
	if (out->len > max_payload)
		return -EMSGSIZE;
	if (out->len < type_info[w.type].min_len || out->len > type_info[w.type].max_len)
		return -EPROTO;
	return 0;
}

ssize_t proto_hello_encode(void *buf, size_t buflen, const struct proto_hello *in)
{
	struct proto_wire_hello w;
	size_t idlen;

	if (in->version == 0 || !proto_node_id_ok(in->node_id))
		return -EINVAL;
	idlen = strlen(in->node_id);
	if (buflen < sizeof(w) + idlen + 8)
		return -ENOSPC;
	w.version = htobe16(in->version);
	w.caps = htobe16(in->caps);
	memcpy(w.nonce, in->nonce, sizeof(w.nonce));
	w.listen_port = htobe16(in->listen_port);
	w.node_id_len = (uint8_t)idlen;
	memcpy(buf, &w, sizeof(w));
	memcpy((uint8_t *)buf + sizeof(w), in->node_id, idlen);
	uint64_t up = htobe64(in->uptime_ms);
	memcpy((uint8_t *)buf + sizeof(w) + idlen, &up, sizeof(up));
	return (ssize_t)(sizeof(w) + idlen + sizeof(up));
}

int proto_hello_decode(const void *payload, size_t len, struct proto_hello *out)
{
	struct proto_wire_hello w;
	const uint8_t *id;

	if (len < sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	id = (const uint8_t *)payload + sizeof(w);
	size_t base = sizeof(w) + w.node_id_len;
	if ((len != base && len != base + 8) || !node_id_bytes_ok(id, w.node_id_len))
		return -EPROTO;
	uint64_t up = 0;
	if (len == base + 8)
		memcpy(&up, id + w.node_id_len, sizeof(up));
	out->uptime_ms = be64toh(up);
	if (be16toh(w.version) == 0)
		return -EPROTO;
	out->version = be16toh(w.version);
	out->caps = be16toh(w.caps);
	memcpy(out->nonce, w.nonce, sizeof(out->nonce));
	out->listen_port = be16toh(w.listen_port);
	memcpy(out->node_id, id, w.node_id_len);
	out->node_id[w.node_id_len] = '\0';
	return 0;
}

void proto_auth_encode(void *buf, const struct proto_auth *in)
{
	struct proto_wire_auth w;

	memcpy(w.mac, in->mac, sizeof(w.mac));
	w.insecure = in->insecure ? 1 : 0;
	memcpy(buf, &w, sizeof(w));
}

int proto_auth_decode(const void *payload, size_t len, struct proto_auth *out)
{
	struct proto_wire_auth w;

	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	if (w.insecure > 1)
		return -EPROTO;
	memcpy(out->mac, w.mac, sizeof(out->mac));
	out->insecure = w.insecure;
	return 0;
}

int proto_empty_decode(const void *payload, size_t len)
{
	(void)payload;
	return len == 0 ? 0 : -EPROTO;
}

void proto_ping_encode(void *buf, const struct proto_ping *in)
{
	struct proto_wire_ping w = { .mono_ms = htobe64(in->mono_ms) };

	memcpy(buf, &w, sizeof(w));
}

int proto_ping_decode(const void *payload, size_t len, struct proto_ping *out)
{
	struct proto_wire_ping w;

	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	out->mono_ms = be64toh(w.mono_ms);
	return 0;
}

static ssize_t gossip_event_encode(uint8_t *p, size_t left, const struct proto_gossip_event *e)
{
	size_t idlen = strnlen(e->node_id, sizeof(e->node_id));
	if (e->state > PROTO_GOSSIP_LEFT || !e->inc || !node_id_bytes_ok((const uint8_t *)e->node_id,
									idlen))
		return -EINVAL;
	if (left < 10 + idlen)
		return -ENOSPC;
	uint64_t inc = htobe64(e->inc);
	p[0] = e->state;
	memcpy(p + 1, &inc, 8);
	p[9] = (uint8_t)idlen;
	memcpy(p + 10, e->node_id, idlen);
	return (ssize_t)(10 + idlen);
}

ssize_t proto_ping_gossip_encode(void *buf, size_t buflen, const struct proto_ping *ping,
				 const struct proto_gossip *g)
{
	uint8_t *p = buf;
	if (!g->inc || g->n > PROTO_GOSSIP_MAX)
		return -EINVAL;
	if (buflen < PROTO_PING_LEN + 9)
		return -ENOSPC;
	proto_ping_encode(p, ping);
	uint64_t inc = htobe64(g->inc);
	memcpy(p + PROTO_PING_LEN, &inc, 8);
	p[PROTO_PING_LEN + 8] = (uint8_t)g->n;
	size_t off = PROTO_PING_LEN + 9;
	for (unsigned i = 0; i < g->n; i++) {
		ssize_t k = gossip_event_encode(p + off, buflen - off, &g->ev[i]);
		if (k < 0)
			return k;
		off += (size_t)k;
	}
	return (ssize_t)off;
}

static int gossip_event_decode(const uint8_t *p, size_t left, struct proto_gossip_event *e,
			       size_t *used)
{
	uint64_t inc;
	if (left < 10)
		return -EPROTO;
	memcpy(&inc, p + 1, 8);
	e->state = p[0];
	e->inc = be64toh(inc);
	size_t idlen = p[9];
	if (e->state > PROTO_GOSSIP_LEFT || !e->inc || left - 10 < idlen ||
	    !node_id_bytes_ok(p + 10, idlen))
		return -EPROTO;
	memcpy(e->node_id, p + 10, idlen);
	e->node_id[idlen] = '\0';
	*used = 10 + idlen;
	return 0;
}

int proto_ping_gossip_decode(const void *payload, size_t len, struct proto_ping *ping,
			     struct proto_gossip *g)
{
	const uint8_t *p = payload;
	uint64_t inc;
	g->inc = 0;
	g->n = 0;
	if (len < PROTO_PING_LEN)
		return -EPROTO;
	proto_ping_decode(p, PROTO_PING_LEN, ping);
	if (len == PROTO_PING_LEN)
		return 0;
	if (len < PROTO_PING_LEN + 9)
		return -EPROTO;
	memcpy(&inc, p + PROTO_PING_LEN, 8);
	unsigned n = p[PROTO_PING_LEN + 8];
	if (!inc || n > PROTO_GOSSIP_MAX)
		return -EPROTO;
	size_t off = PROTO_PING_LEN + 9;
	for (unsigned i = 0; i < n; i++) {
		size_t used;
		if (gossip_event_decode(p + off, len - off, &g->ev[i], &used))
			return -EPROTO;
		off += used;
	}
	if (off != len)
		return -EPROTO;
	g->inc = be64toh(inc);
	g->n = n;
	return 0;
}

void proto_get_encode(void *buf, const struct proto_get *in)
{
	struct proto_wire_get w = {
		.file_key = htobe64(in->file_key),
		.file_size = htobe64(in->file_size),
		.mtime_ns = (int64_t)htobe64((uint64_t)in->mtime_ns),
		.chunk = htobe64(in->chunk),
		.chunk_size = htobe32(in->chunk_size),
		.flags = htobe32(in->flags),
	};

	memcpy(buf, &w, sizeof(w));
}

int proto_get_decode(const void *payload, size_t len, struct proto_get *out)
{
	struct proto_wire_get w;
	struct proto_get g;

	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	g.file_key = be64toh(w.file_key);
	g.file_size = be64toh(w.file_size);
	g.mtime_ns = (int64_t)be64toh((uint64_t)w.mtime_ns);
	g.chunk = be64toh(w.chunk);
	g.chunk_size = be32toh(w.chunk_size);
	g.flags = be32toh(w.flags);
	if (g.chunk_size == 0 || (g.flags & ~(uint32_t)PROTO_GET_FLAGS_KNOWN))
		return -EPROTO;
	if ((g.flags & PROTO_GET_WAIT) && (g.flags & PROTO_GET_FILL))
		return -EPROTO;
	/* The chunk must start before EOF; written so that chunk * chunk_size cannot overflow. */
	if (g.file_size == 0 || g.chunk > (g.file_size - 1) / g.chunk_size)
		return -EPROTO;
	*out = g;
	return 0;
}

void proto_data_encode(void *buf, const struct proto_data *in)
{
	struct proto_wire_data w = {
		.status = (int32_t)htobe32((uint32_t)in->status),
		.crc32 = htobe32(in->crc32),
		.length = htobe32(in->length),
	};

	memcpy(buf, &w, sizeof(w));
}

int proto_data_decode_fixed(const void *fixed, uint32_t payload_len, struct proto_data *out)
{
	struct proto_wire_data w;
	struct proto_data d;

	memcpy(&w, fixed, sizeof(w));
	d.status = (int32_t)be32toh((uint32_t)w.status);
	d.crc32 = be32toh(w.crc32);
	d.length = be32toh(w.length);
	d.data = NULL;
	if (payload_len < sizeof(w) || payload_len - sizeof(w) != d.length)
		return -EPROTO;
	if (d.status < 0 || d.status > PROTO_STATUS_MAX)
		return -EPROTO;
	if (d.status != 0 && (d.length != 0 || d.crc32 != 0))
		return -EPROTO;
	*out = d;
	return 0;
}

int proto_data_decode(const void *payload, size_t len, struct proto_data *out)
{
	int rc;

	if (len < PROTO_DATA_FIXED_LEN || len > UINT32_MAX)
		return -EPROTO;
	rc = proto_data_decode_fixed(payload, (uint32_t)len, out);
	if (rc)
		return rc;
	if (out->length)
		out->data = (const uint8_t *)payload + PROTO_DATA_FIXED_LEN;
	return 0;
}

void proto_piece_encode(void *buf, const struct proto_piece *in)
{
	struct proto_wire_piece w = {
		.status = (int32_t)htobe32((uint32_t)in->status),
		.crc32 = htobe32(in->crc32),
		.length = htobe32(in->length),
		.offset = htobe32(in->offset),
	};

	memcpy(buf, &w, sizeof(w));
}

int proto_piece_decode_fixed(const void *fixed, uint32_t payload_len, struct proto_piece *out)
{
	struct proto_wire_piece w;
	struct proto_piece c;

	if (payload_len < sizeof(w))
		return -EPROTO;
	memcpy(&w, fixed, sizeof(w));
	c.status = (int32_t)be32toh((uint32_t)w.status);
	c.crc32 = be32toh(w.crc32);
	c.length = be32toh(w.length);
	c.offset = be32toh(w.offset);
	c.n = payload_len - (uint32_t)sizeof(w);
	c.data = NULL;
	if (c.status < 0 || c.status > PROTO_STATUS_MAX || c.offset > c.length)
		return -EPROTO;
	if (c.status != 0 && (c.n != 0 || c.crc32 != 0))
		return -EPROTO;
	/* Written so that offset + n cannot overflow: offset <= length was checked. */
	if (c.status == 0 && (c.n == 0 || c.n > c.length - c.offset))
		return -EPROTO;
	*out = c;
	return 0;
}

int proto_piece_decode(const void *payload, size_t len, struct proto_piece *out)
{
	int rc;

	if (len < PROTO_PIECE_FIXED_LEN || len > UINT32_MAX)
		return -EPROTO;
	rc = proto_piece_decode_fixed(payload, (uint32_t)len, out);
	if (rc)
		return rc;
	if (out->n)
		out->data = (const uint8_t *)payload + PROTO_PIECE_FIXED_LEN;
	return 0;
}

ssize_t proto_redirect_encode(void *buf, size_t buflen, const struct proto_redirect *in)
{
	struct proto_wire_redirect w;

	if (!proto_node_id_ok(in->node_id))
		return -EINVAL;
	size_t idlen = strlen(in->node_id);
	if (buflen < sizeof(w) + idlen)
		return -ENOSPC;
	w.node_id_len = (uint8_t)idlen;
	memcpy(buf, &w, sizeof(w));
	memcpy((uint8_t *)buf + sizeof(w), in->node_id, idlen);
	return (ssize_t)(sizeof(w) + idlen);
}

int proto_redirect_decode(const void *payload, size_t len, struct proto_redirect *out)
{
	struct proto_wire_redirect w;

	if (len < sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	const uint8_t *id = (const uint8_t *)payload + sizeof(w);
	if (len != sizeof(w) + w.node_id_len || !node_id_bytes_ok(id, w.node_id_len))
		return -EPROTO;
	memcpy(out->node_id, id, w.node_id_len);
	out->node_id[w.node_id_len] = '\0';
	return 0;
}

ssize_t proto_ping_req_encode(void *buf, size_t buflen, const struct proto_ping_req *in)
{
	struct proto_redirect r;
	_Static_assert(sizeof(r.node_id) == sizeof(in->node_id), "same id field");
	memcpy(r.node_id, in->node_id, sizeof(r.node_id));
	return proto_redirect_encode(buf, buflen, &r);
}

int proto_ping_req_decode(const void *payload, size_t len, struct proto_ping_req *out)
{
	struct proto_redirect r;
	int rc = proto_redirect_decode(payload, len, &r);
	if (rc == 0)
		memcpy(out->node_id, r.node_id, sizeof(out->node_id));
	return rc;
}

void proto_ping_req_ack_encode(void *buf, const struct proto_ping_req_ack *in)
{
	uint32_t v = htobe32(in->age_ms);
	memcpy(buf, &v, sizeof(v));
}

int proto_ping_req_ack_decode(const void *payload, size_t len, struct proto_ping_req_ack *out)
{
	uint32_t v;
	if (len != PROTO_PING_REQ_ACK_LEN)
		return -EPROTO;
	memcpy(&v, payload, sizeof(v));
	out->age_ms = be32toh(v);
	return 0;
}

uint64_t proto_file_key(const char *relpath, uint64_t size, int64_t mtime_ns)
{
	uint64_t be_size = htobe64(size);
	uint64_t be_mtime = htobe64((uint64_t)mtime_ns);
	uint8_t sep = 0;
	uint64_t h = FNV64_BASIS;

	h = fnv1a64(h, relpath, strlen(relpath));
	h = fnv1a64(h, &sep, 1);
	h = fnv1a64(h, &be_size, sizeof(be_size));
	h = fnv1a64(h, &be_mtime, sizeof(be_mtime));
	return fmix64(h);
}

void proto_rdma_ticket_encode(void *buf, const struct proto_rdma_ticket *in)
{
	struct proto_wire_rdma_ticket w = { .port = htobe16(in->port) };

	memcpy(w.ticket, in->ticket, sizeof(w.ticket));
	memcpy(buf, &w, sizeof(w));
}

int proto_rdma_ticket_decode(const void *payload, size_t len, struct proto_rdma_ticket *out)
{
	struct proto_wire_rdma_ticket w;

	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	out->port = be16toh(w.port);
	memcpy(out->ticket, w.ticket, sizeof(out->ticket));
	return 0;
}

void proto_prefetch_encode(void *buf, const struct proto_prefetch *in)
{
	struct proto_wire_prefetch w = {
		.run_id = htobe64(in->run_id),
		.file_key = htobe64(in->file_key),
		.file_size = htobe64(in->file_size),
		.mtime_ns = (int64_t)htobe64((uint64_t)in->mtime_ns),
		.placement = htobe64(in->placement),
		.chunk_size = htobe32(in->chunk_size),
		.flags = htobe32(in->flags),
	};

	memcpy(buf, &w, sizeof(w));
}

int proto_prefetch_decode(const void *payload, size_t len, struct proto_prefetch *out)
{
	struct proto_wire_prefetch w;
	struct proto_prefetch r;

	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	r.run_id = be64toh(w.run_id);
	r.file_key = be64toh(w.file_key);
	r.file_size = be64toh(w.file_size);
	r.mtime_ns = (int64_t)be64toh((uint64_t)w.mtime_ns);
	r.placement = be64toh(w.placement);
	r.chunk_size = be32toh(w.chunk_size);
	r.flags = be32toh(w.flags);
	if (r.run_id == 0 || r.chunk_size == 0 || r.flags != 0)
		return -EPROTO;
	*out = r;
	return 0;
}

void proto_prefetch_status_encode(void *buf, const struct proto_prefetch_status *in)
{
	struct proto_wire_prefetch_status w = {
		.status = (int32_t)htobe32((uint32_t)in->status),
		.flags = htobe32(in->flags),
		.done = htobe64(in->done),
		.total = htobe64(in->total),
	};

	memcpy(buf, &w, sizeof(w));
}

int proto_prefetch_status_decode(const void *payload, size_t len,
				 struct proto_prefetch_status *out)
{
	struct proto_wire_prefetch_status w;
	struct proto_prefetch_status r;

	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	r.status = (int32_t)be32toh((uint32_t)w.status);
	r.flags = be32toh(w.flags);
	r.done = be64toh(w.done);
	r.total = be64toh(w.total);
	if (r.status < 0 || r.status > PROTO_STATUS_MAX)
		return -EPROTO;
	if ((r.flags & ~(uint32_t)PROTO_PREFETCH_FLAGS_KNOWN) || r.done > r.total)
		return -EPROTO;
	*out = r;
	return 0;
}

void proto_meta_get_encode(void *buf, const struct proto_meta_get *in)
{
	struct proto_wire_meta_get w = {
		.have_version = htobe64(in->have_version),
		.offset = htobe64(in->offset),
		.flags = htobe32(in->flags),
	};
	memcpy(buf, &w, sizeof(w));
}

int proto_meta_get_decode(const void *payload, size_t len, struct proto_meta_get *out)
{
	struct proto_wire_meta_get w;
	if (len != sizeof(w))
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	struct proto_meta_get r = {
		.have_version = be64toh(w.have_version),
		.offset = be64toh(w.offset),
		.flags = be32toh(w.flags),
	};
	if ((r.flags & ~(uint32_t)PROTO_META_GET_FLAGS_KNOWN) || w.reserved ||
	    ((r.flags & PROTO_META_REFRESH) && r.offset))
		return -EPROTO;
	*out = r;
	return 0;
}

void proto_meta_encode(void *buf, const struct proto_meta *in)
{
	struct proto_wire_meta w = {
		.status = (int32_t)htobe32((uint32_t)in->status),
		.flags = htobe32(in->flags),
		.version = htobe64(in->version),
		.age_ms = htobe64(in->age_ms),
		.total = htobe64(in->total),
		.offset = htobe64(in->offset),
	};
	memcpy(buf, &w, sizeof(w));
}

int proto_meta_decode(const void *payload, size_t len, struct proto_meta *out)
{
	struct proto_wire_meta w;
	if (len < sizeof(w) || len - sizeof(w) > PROTO_META_PIECE_MAX)
		return -EPROTO;
	memcpy(&w, payload, sizeof(w));
	struct proto_meta r = {
		.status = (int32_t)be32toh((uint32_t)w.status),
		.flags = be32toh(w.flags),
		.version = be64toh(w.version),
		.age_ms = be64toh(w.age_ms),
		.total = be64toh(w.total),
		.offset = be64toh(w.offset),
		.length = (uint32_t)(len - sizeof(w)),
	};
	bool quiet = r.status != 0 || (r.flags & PROTO_META_SAME);
	if (r.status < 0 || r.status > PROTO_STATUS_MAX ||
	    (r.flags & ~(uint32_t)PROTO_META_FLAGS_KNOWN) || (quiet && r.length) ||
	    (r.status == 0 && r.version == 0) || r.total > PROTO_META_TOTAL_MAX ||
	    r.offset > r.total || r.length > r.total - r.offset ||
	    (!quiet && r.length == 0 && r.offset < r.total))
		return -EPROTO;
	r.data = r.length ? (const uint8_t *)payload + sizeof(w) : NULL;
	*out = r;
	return 0;
}
