#include "cache/meta.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/tree.h"
#include "common/log.h"

struct meta_node {
	char *name;
	char *target;           /* symlinks only */
	struct stat st;
	uint64_t first, n;      /* children (directories) */
	uint64_t parent;        /* the root's is 0 */
	unsigned depth;
};

struct cache_meta {
	_Atomic unsigned refs;
	struct statvfs vfs;
	struct meta_node *v;
	size_t n, cap;
};

/* A directory still to read: its node and relpath. */
struct pending {
	uint64_t node;
	char *relpath;
};

struct build {
	struct cache_tree *t;
	struct cache_meta *m;
	unsigned depth_max;
	struct pending *q;
	size_t qhead, qn, qcap;
	unsigned skipped_deep, skipped_unreadable;
};

static int node_add(struct cache_meta *m, const struct meta_node *node)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 256;
		struct meta_node *v = realloc(m->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n++] = *node;
	return 0;
}

static int queue_add(struct build *b, uint64_t node, char *relpath)
{
	if (b->qn == b->qcap) {
		size_t cap = b->qcap ? 2 * b->qcap : 64;
		struct pending *q = realloc(b->q, cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		b->q = q;
		b->qcap = cap;
	}
	b->q[b->qn++] = (struct pending){ node, relpath };
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct meta_node *)a)->name, ((const struct meta_node *)b)->name);
}

static void node_release(struct meta_node *node)
{
	free(node->name);
	free(node->target);
}

/* Reads one entry of an open directory into @out. 0, 1 to skip it, or -errno. */
static int read_entry(int dfd, const char *name, uint64_t parent, unsigned depth,
		      struct meta_node *out)
{
	*out = (struct meta_node){ .parent = parent, .depth = depth };
	if (fstatat(dfd, name, &out->st, AT_SYMLINK_NOFOLLOW) < 0)
		return 1; /* gone since readdir */
	out->name = strdup(name);
	if (!out->name)
		return -ENOMEM;
	if (S_ISLNK(out->st.st_mode)) {
		char buf[PATH_MAX];
		ssize_t len = readlinkat(dfd, name, buf, sizeof(buf) - 1);
		buf[len < 0 ? 0 : len] = '\0';
		out->target = strdup(buf);
		if (!out->target)
			return -ENOMEM;
	}
	return 0;
}

/* Gives @node (a child of directory @dir) the inode number its identity uses (cache/tree.h). */
static int node_identity(struct cache_tree *t, const char *dir, struct meta_node *node)
{
	char rel[PATH_MAX];
	int n = snprintf(rel, sizeof(rel), "%s%s%s", dir, *dir ? "/" : "", node->name);
	if (n < 0 || (size_t)n >= sizeof(rel))
		return 1; /* no path can open it either */
	cache_tree_identity(t, rel, &node->st);
	return 0;
}

/* Reads directory @p into new nodes (its children, sorted) and queues its subdirectories. */
static int read_dir(struct build *b, const struct pending *p)
{
	struct cache_meta *m = b->m;
	unsigned depth = m->v[p->node].depth;
	if (depth >= b->depth_max) {
		if (!b->skipped_deep++)
			log_warn("metadata: not listing '%.200s', %u levels down (the limit)",
				 p->relpath, depth);
		return 0;
	}
	int fd = cache_tree_open(b->t, p->relpath, CACHE_TREE_DIR, NULL);
	DIR *dp = fd < 0 ? NULL : fdopendir(fd);
	if (!dp) {
		int err = fd < 0 ? -fd : errno;
		if (fd >= 0)
			close(fd);
		if (p->node == 0)
			return -err;
		if (!b->skipped_unreadable++)
			log_warn("metadata: cannot list '%.200s': %s; shown empty", p->relpath,
				 strerror(err));
		return 0;
	}
	uint64_t first = m->n;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dp))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct meta_node node;
		rc = read_entry(dirfd(dp), de->d_name, p->node, depth + 1, &node);
		if (rc == 0)
			rc = node_identity(b->t, p->relpath, &node);
		if (rc == 0)
			rc = node_add(m, &node);
		if (rc)
			node_release(&node);
		rc = rc > 0 ? 0 : rc;
	}
	closedir(dp);
	if (rc)
		return rc;
	qsort(m->v + first, m->n - first, sizeof(*m->v), by_name);
	m->v[p->node].first = first;
	m->v[p->node].n = m->n - first;
	for (uint64_t i = first; i < m->n && rc == 0; i++) {
		if (!S_ISDIR(m->v[i].st.st_mode))
			continue;
		char *rel;
		if (asprintf(&rel, "%s%s%s", p->relpath, *p->relpath ? "/" : "", m->v[i].name) < 0)
			return -ENOMEM;
		rc = queue_add(b, i, rel);
		if (rc)
			free(rel);
	}
	return rc;
}

struct cache_meta *cache_meta_build(struct cache_tree *t, unsigned depth_max)
{
	struct cache_meta *m = calloc(1, sizeof(*m));
	struct build b = { .t = t, .m = m, .depth_max = depth_max };
	struct meta_node root = { .name = strdup("") };
	int rc = m && root.name ? 0 : -ENOMEM;
	if (rc == 0 && fstat(cache_tree_root_fd(t), &root.st) < 0)
		rc = -errno;
	if (rc == 0)
		cache_tree_identity(t, "", &root.st);
	if (rc == 0 && fstatvfs(cache_tree_root_fd(t), &m->vfs) < 0)
		memset(&m->vfs, 0, sizeof(m->vfs));
	if (rc == 0)
		rc = node_add(m, &root);
	if (rc == 0)
		root.name = NULL; /* the snapshot owns it */
	char *top = rc == 0 ? strdup("") : NULL;
	if (rc == 0)
		rc = top ? queue_add(&b, 0, top) : -ENOMEM;
	while (rc == 0 && b.qhead < b.qn) {
		struct pending p = b.q[b.qhead++];
		rc = read_dir(&b, &p);
		free(p.relpath);
	}
	while (b.qhead < b.qn)
		free(b.q[b.qhead++].relpath);
	free(b.q);
	free(root.name);
	if (rc == 0 && (b.skipped_deep > 1 || b.skipped_unreadable > 1))
		log_info("metadata: %u directories past the depth limit and %u unreadable ones "
			 "shown empty", b.skipped_deep, b.skipped_unreadable);
	if (rc) {
		if (m) {
			m->refs = 1;
			cache_meta_put(m);
		}
		errno = -rc;
		return NULL;
	}
	m->refs = 1;
	return m;
}

void cache_meta_get(struct cache_meta *m)
{
	atomic_fetch_add(&m->refs, 1);
}

void cache_meta_put(struct cache_meta *m)
{
	if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	for (size_t i = 0; i < m->n; i++)
		node_release(&m->v[i]);
	free(m->v);
	free(m);
}

size_t cache_meta_count(const struct cache_meta *m)
{
	return m->n;
}

/* The child of directory @dir named by the @len bytes at @name, or -1. */
static int64_t child(const struct cache_meta *m, uint64_t dir, const char *name, size_t len)
{
	uint64_t lo = m->v[dir].first, hi = lo + m->v[dir].n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const char *s = m->v[mid].name;
		int c = strncmp(s, name, len);
		if (c == 0 && s[len] != '\0')
			c = 1;
		if (c == 0)
			return (int64_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int64_t cache_meta_find(const struct cache_meta *m, const char *relpath)
{
	int64_t i = 0;
	while (*relpath && i >= 0) {
		const char *slash = strchr(relpath, '/');
		size_t len = slash ? (size_t)(slash - relpath) : strlen(relpath);
		i = S_ISDIR(m->v[i].st.st_mode) ? child(m, (uint64_t)i, relpath, len) : -1;
		relpath += len + (slash != NULL);
	}
	return i;
}

const struct stat *cache_meta_stat(const struct cache_meta *m, uint64_t i)
{
	return &m->v[i].st;
}

const char *cache_meta_name(const struct cache_meta *m, uint64_t i)
{
	return m->v[i].name;
}

const char *cache_meta_target(const struct cache_meta *m, uint64_t i)
{
	return m->v[i].target;
}

char *cache_meta_relpath(const struct cache_meta *m, uint64_t i)
{
	size_t len = 0;
	for (uint64_t k = i; k; k = m->v[k].parent)
		len += strlen(m->v[k].name) + 1;
	char *p = malloc(len + 1);
	if (!p)
		return NULL;
	p[len ? len - 1 : 0] = '\0';
	size_t end = len ? len - 1 : 0; /* no trailing '/' */
	for (uint64_t k = i; k; k = m->v[k].parent) {
		size_t n = strlen(m->v[k].name);
		end -= n;
		memcpy(p + end, m->v[k].name, n);
		if (end)
			p[--end] = '/';
	}
	return p;
}

const struct statvfs *cache_meta_statvfs(const struct cache_meta *m)
{
	return &m->vfs;
}

void cache_meta_children(const struct cache_meta *m, uint64_t i, uint64_t *first,
			 uint64_t *n)
{
	*first = m->v[i].first;
	*n = S_ISDIR(m->v[i].st.st_mode) ? m->v[i].n : 0;
}

/* ---- the wire form ---- */

#define WIRE_MAGIC 0x4d574d53u
#define WIRE_VERSION 1
#define WIRE_HDR_LEN (4 + 2 + 2 + 4 + 8 * 8)
#define WIRE_NODE_LEN (5 * 4 + 2 * 8 + 4 + 3 * 8 + 2 + 2)
#define WIRE_NAME_MAX 255
#define WIRE_TARGET_MAX 4095

struct wbuf {
	uint8_t *p;
	size_t n;
};

static void put_be(struct wbuf *w, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		w->p[w->n + i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	w->n += bytes;
}

static void put_bytes(struct wbuf *w, const void *src, size_t len)
{
	if (len) /* src may be NULL then (no symlink target) */
		memcpy(w->p + w->n, src, len);
	w->n += len;
}

/* In two's complement modulo 2^64, so that every decoded time encodes back unchanged. */
static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
	int64_t s = ns / 1000000000, r = ns % 1000000000;
	if (r < 0) {
		r += 1000000000;
		s--;
	}
	return (struct timespec){ .tv_sec = (time_t)s, .tv_nsec = (long)r };
}

static void put_vfs(struct wbuf *w, const struct statvfs *v)
{
	const uint64_t f[8] = { v->f_bsize, v->f_frsize, v->f_blocks, v->f_bfree, v->f_bavail,
				v->f_files, v->f_ffree, v->f_namemax };
	for (unsigned i = 0; i < 8; i++)
		put_be(w, f[i], 8);
}

static void put_node(struct wbuf *w, const struct meta_node *nd)
{
	const struct stat *st = &nd->st;
	size_t tlen = nd->target ? strlen(nd->target) : 0;
	put_be(w, nd->parent, 4);
	put_be(w, st->st_mode, 4);
	put_be(w, st->st_uid, 4);
	put_be(w, st->st_gid, 4);
	put_be(w, (uint64_t)st->st_nlink, 4);
	put_be(w, (uint64_t)st->st_size, 8);
	put_be(w, (uint64_t)st->st_blocks, 8);
	put_be(w, (uint64_t)st->st_blksize, 4);
	put_be(w, ts_ns(&st->st_atim), 8);
	put_be(w, ts_ns(&st->st_mtim), 8);
	put_be(w, ts_ns(&st->st_ctim), 8);
	put_be(w, strlen(nd->name), 2);
	put_be(w, tlen, 2);
	put_bytes(w, nd->name, strlen(nd->name));
	put_bytes(w, nd->target, tlen);
}

int cache_meta_encode(const struct cache_meta *m, uint8_t **out, size_t *len)
{
	uint64_t total = WIRE_HDR_LEN;
	for (size_t i = 0; i < m->n; i++) {
		size_t nl = strlen(m->v[i].name), tl = m->v[i].target ? strlen(m->v[i].target) : 0;
		if (nl > WIRE_NAME_MAX || tl > WIRE_TARGET_MAX || m->n > UINT32_MAX)
			return -EFBIG; /* a listing never holds these */
		total += WIRE_NODE_LEN + nl + tl;
	}
	if (total > CACHE_META_WIRE_MAX)
		return -EFBIG;
	struct wbuf w = { .p = malloc(total) };
	if (!w.p)
		return -ENOMEM;
	put_be(&w, WIRE_MAGIC, 4);
	put_be(&w, WIRE_VERSION, 2);
	put_be(&w, 0, 2);
	put_be(&w, m->n, 4);
	put_vfs(&w, &m->vfs);
	for (size_t i = 0; i < m->n; i++)
		put_node(&w, &m->v[i]);
	*out = w.p;
	*len = w.n;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t n, off;
};

static bool get_be(struct rbuf *r, unsigned bytes, uint64_t *v)
{
	if (r->n - r->off < bytes)
		return false;
	*v = 0;
	for (unsigned i = 0; i < bytes; i++)
		*v = (*v << 8) | r->p[r->off + i];
	r->off += bytes;
	return true;
}

static bool name_ok(const uint8_t *s, size_t len)
{
	if (len < 1 || len > WIRE_NAME_MAX || memchr(s, '/', len) || memchr(s, '\0', len))
		return false;
	return !(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.');
}

static bool type_ok(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFIFO: case S_IFSOCK: case S_IFCHR:
	case S_IFBLK:
		return (mode & ~(uint32_t)(S_IFMT | 07777)) == 0;
	default:
		return false;
	}
}

/* Reads node @i's fixed part into @nd (name and target copied after). NULL, or why not. */
static const char *get_node_fixed(struct rbuf *r, uint64_t i, struct meta_node *nd,
				  uint64_t *nl, uint64_t *tl)
{
	uint64_t f[13];
	static const unsigned w[13] = { 4, 4, 4, 4, 4, 8, 8, 4, 8, 8, 8, 2, 2 };
	for (unsigned k = 0; k < 13; k++)
		if (!get_be(r, w[k], &f[k]))
			return "truncated node";
	if ((i == 0 && f[0] != 0) || (i > 0 && f[0] >= i))
		return "a parent that does not come first";
	if (!type_ok((uint32_t)f[1]))
		return "a bad mode";
	if (f[5] > INT64_MAX || f[6] > INT64_MAX)
		return "a size out of range";
	*nd = (struct meta_node){ .parent = f[0] };
	nd->st.st_mode = (mode_t)f[1];
	nd->st.st_uid = (uid_t)f[2];
	nd->st.st_gid = (gid_t)f[3];
	nd->st.st_nlink = (nlink_t)f[4];
	nd->st.st_size = (off_t)f[5];
	nd->st.st_blocks = (blkcnt_t)f[6];
	nd->st.st_blksize = (blksize_t)f[7];
	nd->st.st_atim = ns_ts((int64_t)f[8]);
	nd->st.st_mtim = ns_ts((int64_t)f[9]);
	nd->st.st_ctim = ns_ts((int64_t)f[10]);
	*nl = f[11];
	*tl = f[12];
	if (i == 0 && (*nl != 0 || !S_ISDIR(nd->st.st_mode)))
		return "a bad root";
	if ((*tl != 0) != (i > 0 && S_ISLNK(nd->st.st_mode)) || *tl > WIRE_TARGET_MAX)
		return "a bad symlink target";
	if (r->n - r->off < *nl + *tl)
		return "truncated name";
	return NULL;
}

/* Places node @i under its parent: children consecutive and ascending. NULL or why not. */
static const char *link_node(struct cache_meta *m, uint64_t i)
{
	struct meta_node *nd = &m->v[i], *par = &m->v[nd->parent];
	if (!S_ISDIR(par->st.st_mode))
		return "a parent that is not a directory";
	if (par->n == 0)
		par->first = i;
	else if (par->first + par->n != i || strcmp(m->v[i - 1].name, nd->name) >= 0)
		return "children not consecutive or not sorted";
	par->n++;
	nd->depth = par->depth + 1;
	return nd->depth > 4096 ? "too deep" : NULL;
}

static const char *get_node(struct rbuf *r, struct cache_meta *m, uint64_t i)
{
	struct meta_node nd;
	uint64_t nl, tl;
	const char *why = get_node_fixed(r, i, &nd, &nl, &tl);
	if (why)
		return why;
	if (i > 0 && !name_ok(r->p + r->off, nl))
		return "a bad name";
	if (tl && memchr(r->p + r->off + nl, '\0', tl))
		return "a bad symlink target";
	nd.name = strndup((const char *)r->p + r->off, nl);
	nd.target = tl ? strndup((const char *)r->p + r->off + nl, tl) : NULL;
	r->off += nl + tl;
	if (!nd.name || (tl && !nd.target) || node_add(m, &nd)) {
		node_release(&nd);
		return "";
	}
	return i > 0 ? link_node(m, i) : NULL;
}

static bool get_header(struct rbuf *r, struct cache_meta *m, uint64_t *count)
{
	uint64_t magic, version, flags, f[8];
	if (!get_be(r, 4, &magic) || !get_be(r, 2, &version) || !get_be(r, 2, &flags) ||
	    !get_be(r, 4, count) || magic != WIRE_MAGIC || version != WIRE_VERSION || flags ||
	    *count == 0 || *count > (r->n - WIRE_HDR_LEN) / WIRE_NODE_LEN + 1)
		return false;
	for (unsigned k = 0; k < 8; k++)
		if (!get_be(r, 8, &f[k]))
			return false;
	m->vfs = (struct statvfs){ .f_bsize = f[0], .f_frsize = f[1], .f_blocks = f[2],
				   .f_bfree = f[3], .f_bavail = f[4], .f_files = f[5],
				   .f_ffree = f[6], .f_namemax = f[7] };
	return true;
}

/* Gives every node the identity this node's own listing would (st_dev, st_ino). */
static int fix_all(struct cache_meta *m, void (*fix)(void *, const char *, struct stat *),
		   void *ctx)
{
	for (uint64_t i = 0; fix && i < m->n; i++) {
		char *rel = cache_meta_relpath(m, i);
		if (!rel)
			return -ENOMEM;
		fix(ctx, rel, &m->v[i].st);
		free(rel);
	}
	return 0;
}

struct cache_meta *cache_meta_decode(const void *buf, size_t len,
				     void (*fix)(void *ctx, const char *relpath, struct stat *st),
				     void *ctx, char *err, size_t errlen)
{
	struct rbuf r = { .p = buf, .n = len };
	struct cache_meta *m = calloc(1, sizeof(*m));
	const char *why = m ? NULL : "";
	uint64_t count = 0;
	if (!why && (len > CACHE_META_WIRE_MAX || len < WIRE_HDR_LEN || !get_header(&r, m, &count)))
		why = "a bad header";
	for (uint64_t i = 0; !why && i < count; i++)
		why = get_node(&r, m, i);
	if (!why && r.off != r.n)
		why = "trailing bytes";
	if (!why && fix_all(m, fix, ctx))
		why = "";
	if (m)
		m->refs = 1;
	if (why) {
		snprintf(err, errlen, "%s", *why ? why : "out of memory");
		cache_meta_put(m);
		errno = *why ? EPROTO : ENOMEM;
		return NULL;
	}
	return m;
}
