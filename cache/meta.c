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
