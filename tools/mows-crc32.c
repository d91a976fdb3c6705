/*
 * mows-crc32: writes crc32.txt, the manifest of whole-file CRC-32s that mows verifies backing
 * files against (format in cache/manifest.h), or checks a directory against one. With
 * --chunks it also writes crc32.chunks beside it, the CRC of every chunk of every file
 * (format in cache/chunkmap.h); --check checks that sidecar too when it is there.
 *
 * Files are cut into pieces of at most PIECE_SIZE. A pool of threads takes pieces off one
 * shared counter, each reading with large preads into a buffer of its own, and the CRCs of a
 * file's pieces are joined with mows_crc32_combine. So a single huge file keeps every thread
 * busy, and so do many small ones. Each piece opens its file itself: no fd is shared.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/chunkmap.h"
#include "cache/manifest.h"
#include "common/crc.h"
#include "common/deadline.h"
#include "common/log.h"

#define PIECE_SIZE (64ull << 20)
#define READ_SIZE (4u << 20)
#define MAX_THREADS 1024
#define MANIFEST_NAME "crc32.txt"
#define MANIFEST_MAX_BYTES (1ul << 30)

enum { EXIT_GOOD = 0, EXIT_PROBLEMS = 1, EXIT_USAGE = 2 };

struct file {
	char *rel;         /* relative to the root, no leading "./" */
	uint64_t size;     /* when listed; a change while hashing is an error */
	uint32_t crc;      /* computed */
	uint32_t expected; /* --check: from the manifest */
	bool missing;      /* --check: not there */
	int err;           /* -errno of the first failed piece, or of the listing */
	const char *why;   /* set when err alone would not explain the problem */
	uint32_t *chunks;  /* --chunks, or --check with a sidecar: CRC per chunk */
};

struct file_list {
	struct file *v;
	size_t n, cap;
};

struct piece {
	size_t file;
	uint64_t off, len;
	uint32_t *chunks;  /* where this piece's chunk CRCs go, or NULL */
	uint32_t crc;
	int err;
	const char *why;
};

/* Shared by the hashing threads; each writes only the pieces it took. */
struct hasher {
	int rootfd;
	uint64_t chunk_size; /* of the chunk CRCs, when files have them */
	const struct file *files;
	struct piece *pieces;
	size_t npieces;
	atomic_size_t next;
};

struct worker {
	struct hasher *h;
	char *buf;
	pthread_t tid;
};

struct options {
	bool check, quiet, verbose, chunks;
	uint64_t chunk_size;  /* --chunk-size */
	unsigned threads;
	const char *out;      /* generate: -o */
	const char *manifest; /* check: -m */
	const char *dir;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (is_space(*s))
			return true;
	return false;
}

static int list_add(struct file_list *l, char *rel, uint64_t size, uint32_t expected)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct file *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct file){ .rel = rel, .size = size, .expected = expected };
	return 0;
}

static void list_release(struct file_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].rel);
		free(l->v[i].chunks);
	}
	free(l->v);
}

static uint64_t nchunks_of(uint64_t size, uint64_t chunk_size)
{
	return (size + chunk_size - 1) / chunk_size;
}

/* Gives every file that will be hashed room for its chunk CRCs. Returns 0 or -ENOMEM. */
static int list_want_chunks(struct file_list *l, uint64_t chunk_size)
{
	for (size_t i = 0; i < l->n; i++) {
		uint64_t n = nchunks_of(l->v[i].size, chunk_size);
		l->v[i].chunks = calloc(n ? n : 1, sizeof(uint32_t));
		if (!l->v[i].chunks)
			return -ENOMEM;
	}
	return 0;
}

static int cmp_rel(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->rel, ((const struct file *)b)->rel);
}

/* Sorts by path (bytewise, as LC_ALL=C sort does) and drops repeated paths. */
static void list_sort_unique(struct file_list *l)
{
	size_t j = 0;

	qsort(l->v, l->n, sizeof(*l->v), cmp_rel);
	for (size_t i = 0; i < l->n; i++) {
		if (j && strcmp(l->v[j - 1].rel, l->v[i].rel) == 0) {
			free(l->v[i].rel);
			continue;
		}
		l->v[j++] = l->v[i];
	}
	l->n = j;
}

/* ---- hashing ---- */

/* Adds @n bytes at file offset @off to the CRCs of the chunks they fall in. */
static void chunks_update(struct piece *pc, uint64_t chunk_size, uint64_t off, const char *buf,
			  size_t n)
{
	while (n) {
		uint64_t k = (off - pc->off) / chunk_size;
		uint64_t room = chunk_size - off % chunk_size;
		size_t take = n < room ? n : (size_t)room;
		pc->chunks[k] = mows_crc32(pc->chunks[k], buf, take);
		buf += take;
		off += take;
		n -= take;
	}
}

static int piece_read(int fd, struct piece *pc, char *buf, uint64_t chunk_size)
{
	uint64_t off = pc->off, left = pc->len;
	uint32_t crc = 0;

	while (left) {
		ssize_t n = pread(fd, buf, left < READ_SIZE ? left : READ_SIZE, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			pc->why = "file shrank while being read";
			return -EIO;
		}
		crc = mows_crc32(crc, buf, (size_t)n);
		if (pc->chunks)
			chunks_update(pc, chunk_size, off, buf, (size_t)n);
		off += (uint64_t)n;
		left -= (uint64_t)n;
	}
	pc->crc = crc;
	return 0;
}

static int piece_hash(const struct hasher *h, struct piece *pc, char *buf)
{
	const struct file *f = &h->files[pc->file];
	struct stat st;
	int fd, rc;

	/* O_NONBLOCK: should a FIFO have replaced the file, open must not wait for a writer. */
	fd = openat(h->rootfd, f->rel, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = fstat(fd, &st) < 0 ? -errno : 0;
	if (!rc && !S_ISREG(st.st_mode)) {
		pc->why = "not a regular file";
		rc = -EINVAL;
	}
	if (!rc) {
		posix_fadvise(fd, (off_t)pc->off, (off_t)pc->len, POSIX_FADV_SEQUENTIAL);
		rc = piece_read(fd, pc, buf, h->chunk_size);
	}
	/* Growth shows only at the end; the piece that reads it checks the size again. */
	if (!rc && pc->off + pc->len == f->size && fstat(fd, &st) == 0 &&
	    (uint64_t)st.st_size != f->size) {
		pc->why = "file changed size while being read";
		rc = -EIO;
	}
	close(fd);
	return rc;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct hasher *h = w->h;

	for (;;) {
		size_t i = atomic_fetch_add(&h->next, 1);
		if (i >= h->npieces)
			break;
		h->pieces[i].err = piece_hash(h, &h->pieces[i], w->buf);
	}
	return NULL;
}

/* A whole number of chunks (both are powers of two), so no chunk spans two pieces. */
static uint64_t piece_size(uint64_t chunk_size)
{
	return chunk_size > PIECE_SIZE ? chunk_size : PIECE_SIZE;
}

static size_t pieces_of(const struct file *f, uint64_t psize)
{
	if (f->err || f->missing)
		return 0;
	return f->size ? (size_t)((f->size + psize - 1) / psize) : 1;
}

/* Cuts every file still to hash into pieces, in file order and offset order. */
static struct piece *pieces_plan(const struct file_list *l, uint64_t chunk_size,
				 size_t *npieces)
{
	uint64_t psize = piece_size(chunk_size);
	struct piece *pieces;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < l->n; i++)
		n += pieces_of(&l->v[i], psize);
	pieces = calloc(n ? n : 1, sizeof(*pieces));
	if (!pieces)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		for (size_t p = 0; p < pieces_of(&l->v[i], psize); p++) {
			uint64_t off = p * psize, rest = l->v[i].size - off;
			uint32_t *ch = l->v[i].chunks;
			pieces[k++] = (struct piece){
				.file = i, .off = off, .len = rest < psize ? rest : psize,
				.chunks = ch ? ch + off / chunk_size : NULL,
			};
		}
	}
	*npieces = n;
	return pieces;
}

static void pieces_join(struct file_list *l, const struct piece *pieces, size_t npieces)
{
	for (size_t i = 0; i < npieces; i++) {
		const struct piece *pc = &pieces[i];
		struct file *f = &l->v[pc->file];

		f->crc = pc->off ? mows_crc32_combine(f->crc, pc->crc, pc->len) : pc->crc;
		if (pc->err && !f->err) {
			f->err = pc->err;
			f->why = pc->why;
		}
	}
}

/* Starts up to @nthreads - 1 threads and works alongside them. Returns 0 or -ENOMEM. */
static int pool_run(struct hasher *h, unsigned nthreads)
{
	struct worker *w = calloc(nthreads, sizeof(*w));
	unsigned nbuf = 0, started = 1;
	int rc = 0;

	if (!w)
		return -ENOMEM;
	for (; nbuf < nthreads; nbuf++) {
		w[nbuf].h = h;
		w[nbuf].buf = malloc(READ_SIZE);
		if (!w[nbuf].buf)
			break;
	}
	if (!nbuf) {
		rc = -ENOMEM;
		goto out_free_workers;
	}
	/* Fewer threads than asked (no memory, no thread) is slower, not wrong. */
	for (; started < nbuf; started++)
		if (pthread_create(&w[started].tid, NULL, worker_run, &w[started]))
			break;
	worker_run(&w[0]);
	for (unsigned i = 1; i < started; i++)
		pthread_join(w[i].tid, NULL);
	for (unsigned i = 0; i < nbuf; i++)
		free(w[i].buf);
out_free_workers:
	free(w);
	return rc;
}

/* Hashes every file of @l that has no error and is not missing. Returns 0 or -ENOMEM. */
static int hash_files(int rootfd, struct file_list *l, unsigned nthreads, uint64_t chunk_size)
{
	struct hasher h = { .rootfd = rootfd, .files = l->v, .chunk_size = chunk_size };
	int rc;

	h.pieces = pieces_plan(l, chunk_size ? chunk_size : PIECE_SIZE, &h.npieces);
	if (!h.pieces)
		return -ENOMEM;
	if (nthreads > h.npieces)
		nthreads = h.npieces ? (unsigned)h.npieces : 1;
	rc = pool_run(&h, nthreads);
	if (!rc)
		pieces_join(l, h.pieces, h.npieces);
	free(h.pieces);
	return rc;
}

static const char *file_problem(const struct file *f)
{
	return f->why ? f->why : strerror(-f->err);
}

/* ---- listing a directory ---- */

struct walk {
	struct file_list files;
	struct {
		dev_t dev;
		ino_t ino;
	} skip[4]; /* manifests and sidecars, old or being written: never listed */
	unsigned nskip;
	unsigned nerrors;  /* unreadable files or directories: the manifest is not written */
	unsigned nskipped; /* paths with whitespace, left out with a warning */
};

static int walk_dir(struct walk *w, int dfd, const char *prefix);

/* Lists or descends into @name, found in @dfd; takes ownership of @rel, its path. */
static int walk_entry(struct walk *w, int dfd, char *rel, const char *name)
{
	struct stat st;
	int fd, rc;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		log_warn("%s: %s", rel, strerror(errno));
		w->nerrors++;
		goto out_free;
	}
	if (S_ISDIR(st.st_mode)) {
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			log_warn("%s: %s", rel, strerror(errno));
			w->nerrors++;
			goto out_free;
		}
		rc = walk_dir(w, fd, rel);
		free(rel);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		log_debug("%s: not a regular file, not listed", rel);
		goto out_free;
	}
	for (unsigned i = 0; i < w->nskip; i++)
		if (st.st_dev == w->skip[i].dev && st.st_ino == w->skip[i].ino)
			goto out_free;
	if (list_add(&w->files, rel, (uint64_t)st.st_size, 0) < 0)
		goto out_nomem;
	return 0;

out_free:
	free(rel);
	return 0;
out_nomem:
	free(rel);
	return -ENOMEM;
}

/* Lists the regular files under @dfd (which it closes) without following symlinks. */
static int walk_dir(struct walk *w, int dfd, const char *prefix)
{
	struct dirent *de;
	DIR *d = fdopendir(dfd);
	int rc = 0;

	if (!d) {
		log_warn("%s: %s", *prefix ? prefix : ".", strerror(errno));
		w->nerrors++;
		close(dfd);
		return 0;
	}
	while (!rc && (errno = 0, de = readdir(d))) {
		char *rel;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&rel, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name) < 0)
			rc = -ENOMEM;
		else if (has_space(de->d_name)) {
			log_warn("skipping '%s': a path with whitespace cannot be listed in a manifest",
				 rel);
			w->nskipped++;
			free(rel);
		} else {
			rc = walk_entry(w, dfd, rel, de->d_name);
		}
	}
	if (!rc && errno) {
		log_warn("%s: %s", *prefix ? prefix : ".", strerror(errno));
		w->nerrors++;
	}
	closedir(d);
	return rc;
}

/* ---- writing ---- */

static int write_lines(FILE *out, const struct file_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (fprintf(out, "%08x %s\n", l->v[i].crc, l->v[i].rel) < 0)
			return -EIO;
	return fflush(out) ? -errno : 0;
}

static int write_chunk_lines(FILE *out, const struct file_list *l, uint64_t chunk_size)
{
	int rc = cache_chunkmap_write_header(out, chunk_size);
	for (size_t i = 0; i < l->n && !rc; i++)
		rc = cache_chunkmap_write_entry(out, l->v[i].rel, l->v[i].size, l->v[i].chunks,
						nchunks_of(l->v[i].size, chunk_size));
	if (!rc && fflush(out))
		rc = -errno;
	return rc;
}

/* Whether files @a and @b hold the same bytes (false when either cannot be read). */
static bool same_contents(const char *a, const char *b)
{
	FILE *fa = fopen(a, "re"), *fb = fopen(b, "re");
	bool same = fa && fb;
	char ba[65536], bb[65536];
	while (same) {
		size_t na = fread(ba, 1, sizeof(ba), fa), nb = fread(bb, 1, sizeof(bb), fb);
		same = na == nb && !memcmp(ba, bb, na) && !ferror(fa) && !ferror(fb);
		if (na == 0)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

/*
 * Replaces @target in one rename, so that a reader sees the old manifest or the new one;
 * leaves it alone when it already holds these bytes, so that every node of a fleet does not
 * see a changed file (a new version to fetch) for nothing. With @chunk_size, writes the chunk
 * sidecar instead of the manifest.
 */
static int write_atomically(const char *target, const struct file_list *l, mode_t mode,
			    uint64_t chunk_size)
{
	char *tmp;
	FILE *f;
	int fd, rc;

	if (asprintf(&tmp, "%s.tmp.XXXXXX", target) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out_free_tmp;
	}
	f = fdopen(fd, "w");
	if (!f) {
		rc = -errno;
		close(fd);
		goto out_unlink;
	}
	rc = fchmod(fd, mode) < 0 ? -errno : 0;
	if (!rc)
		rc = chunk_size ? write_chunk_lines(f, l, chunk_size) : write_lines(f, l);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && same_contents(tmp, target))
		goto out_unlink; /* unchanged: rc stays 0 */
	if (!rc && rename(tmp, target) < 0)
		rc = -errno;
	if (!rc)
		goto out_free_tmp;
out_unlink:
	unlink(tmp);
out_free_tmp:
	free(tmp);
	return rc;
}

/* ---- the two modes ---- */

static char *default_manifest(const char *dir)
{
	char *path;

	if (asprintf(&path, "%s/%s", dir, MANIFEST_NAME) < 0)
		return NULL;
	return path;
}

static void print_summary(const char *what, const struct walk *w, uint64_t start_ns)
{
	double secs = (double)(mono_ns() - start_ns) / 1e9, mib = 0;

	for (size_t i = 0; i < w->files.n; i++)
		mib += (double)w->files.v[i].size / (1 << 20);
	fprintf(stderr, "mows-crc32: %s: %zu files, %.1f MiB in %.2f s (%.0f MiB/s)", what,
		w->files.n, mib, secs, secs > 0 ? mib / secs : 0);
	if (w->nskipped)
		fprintf(stderr, "; %u paths with whitespace left out", w->nskipped);
	fputc('\n', stderr);
}

static int generate_finish(struct walk *w, const char *target, uint64_t chunk_size)
{
	mode_t mask = umask(0);
	int rc;

	umask(mask);
	for (size_t i = 0; i < w->files.n; i++) {
		if (w->files.v[i].err) {
			log_err("%s: %s", w->files.v[i].rel, file_problem(&w->files.v[i]));
			w->nerrors++;
		}
	}
	if (w->nerrors) {
		log_err("%u files or directories could not be read; %s left as it was",
			w->nerrors, target ? target : "nothing written");
		return EXIT_PROBLEMS;
	}
	/* The sidecar first: a daemon that sees the new manifest finds the chunks to match. */
	if (chunk_size) {
		char *side = cache_chunkmap_name(target);
		rc = side ? write_atomically(side, &w->files, 0666 & ~mask, chunk_size) : -ENOMEM;
		if (rc < 0) {
			log_err("%s: %s", side ? side : target, strerror(-rc));
			free(side);
			return EXIT_PROBLEMS;
		}
		free(side);
	}
	rc = target ? write_atomically(target, &w->files, 0666 & ~mask, 0)
		    : write_lines(stdout, &w->files);
	if (rc < 0) {
		log_err("%s: %s", target ? target : "stdout", strerror(-rc));
		return EXIT_PROBLEMS;
	}
	return EXIT_GOOD;
}

/* A manifest in the tree would be stale as soon as a new one is written: leave it out. */
static void skip_file(struct walk *w, int dirfd, const char *path)
{
	struct stat st;

	if (w->nskip < 4 && fstatat(dirfd, path, &st, 0) == 0) {
		w->skip[w->nskip].dev = st.st_dev;
		w->skip[w->nskip].ino = st.st_ino;
		w->nskip++;
	}
}

static int generate(const struct options *o, int rootfd)
{
	char *target = NULL;
	struct walk w = { 0 };
	uint64_t start = mono_ns();
	int walkfd, rc, status = EXIT_PROBLEMS;

	if (!o->out || strcmp(o->out, "-") != 0) {
		target = o->out ? strdup(o->out) : default_manifest(o->dir);
		if (!target)
			goto out_nomem;
		skip_file(&w, AT_FDCWD, target);
		char *side = cache_chunkmap_name(target);
		if (!side)
			goto out_nomem;
		skip_file(&w, AT_FDCWD, side);
		free(side);
	}
	if (o->out) {
		skip_file(&w, rootfd, MANIFEST_NAME);
		skip_file(&w, rootfd, "crc32.chunks");
	}
	/* Its own open file description: walk_dir() reads and closes it. */
	walkfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (walkfd < 0) {
		log_err("%s: %s", o->dir, strerror(errno));
		goto out_free;
	}
	rc = walk_dir(&w, walkfd, "");
	if (!rc) {
		list_sort_unique(&w.files);
		if (o->chunks)
			rc = list_want_chunks(&w.files, o->chunk_size);
	}
	if (!rc)
		rc = hash_files(rootfd, &w.files, o->threads, o->chunks ? o->chunk_size : 0);
	if (rc < 0)
		goto out_nomem;
	status = generate_finish(&w, target, o->chunks ? o->chunk_size : 0);
	if (status == EXIT_GOOD && !o->quiet)
		print_summary(target ? target : "stdout", &w, start);
	goto out_free;

out_nomem:
	log_err("out of memory");
out_free:
	list_release(&w.files);
	free(target);
	return status;
}

static int read_text(const char *path, char **out, size_t *outlen)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0 || !buf) {
		rc = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *bigger = cap < MANIFEST_MAX_BYTES ? realloc(buf, cap * 2) : NULL;
			if (!bigger) {
				rc = cap < MANIFEST_MAX_BYTES ? -ENOMEM : -EFBIG;
				goto out;
			}
			buf = bigger;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		len += (size_t)n;
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

static int listed_add(struct file_list *l, const struct cache_manifest *m, const char *tok,
		      size_t len)
{
	char *rel;
	uint32_t crc;

	if (len >= 2 && tok[0] == '.' && tok[1] == '/') {
		tok += 2;
		len -= 2;
	}
	rel = strndup(tok, len);
	if (!rel)
		return -ENOMEM;
	/* Not known: the parser skipped the entry and said why. */
	if (!cache_manifest_lookup(m, rel, &crc)) {
		free(rel);
		return 0;
	}
	if (list_add(l, rel, 0, crc) < 0) {
		free(rel);
		return -ENOMEM;
	}
	return 0;
}

/*
 * struct cache_manifest cannot be walked, so the listed paths are found here by splitting the
 * text as cache/manifest.h describes. The manifest stays the judge of which entries are valid
 * and of their CRCs: a path is checked only when cache_manifest_lookup() knows it.
 */
static int list_manifest(const char *text, size_t len, const struct cache_manifest *m,
			 struct file_list *l)
{
	const char *p = text, *end = text + len;
	bool line_start = true;
	size_t ntokens = 0;

	while (p < end) {
		const char *tok;
		int rc;

		if (is_space(*p)) {
			line_start = line_start || *p == '\n';
			p++;
			continue;
		}
		if (*p == '#' && line_start) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			p = nl ? nl : end;
			continue;
		}
		tok = p;
		while (p < end && !is_space(*p))
			p++;
		line_start = false;
		if (ntokens++ % 2 == 0)
			continue; /* the CRC; the manifest has it */
		rc = listed_add(l, m, tok, (size_t)(p - tok));
		if (rc < 0)
			return rc;
	}
	list_sort_unique(l);
	return 0;
}

static void stat_listed(int rootfd, struct file_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct file *f = &l->v[i];
		struct stat st;

		if (fstatat(rootfd, f->rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			f->missing = errno == ENOENT || errno == ENOTDIR;
			f->err = f->missing ? 0 : -errno;
		} else if (!S_ISREG(st.st_mode)) {
			f->err = -EINVAL;
			f->why = "not a regular file";
		} else {
			f->size = (uint64_t)st.st_size;
		}
	}
}

/* Prints a FAILED line for each way @f disagrees with the sidecar; returns true if any. */
static bool chunks_report(const struct file *f, const struct cache_chunkmap *side,
			  const char *side_name)
{
	const uint32_t *want;
	uint64_t size, n, cs = side ? cache_chunkmap_chunk_size(side) : 0;
	bool bad = false;

	if (!side)
		return false;
	if (!cache_chunkmap_lookup(side, f->rel, &size, &want, &n)) {
		printf("FAILED %s: not listed in %s\n", f->rel, side_name);
		return true;
	}
	if (size != f->size) {
		printf("FAILED %s: %s lists %" PRIu64 " bytes, the file has %" PRIu64 "\n", f->rel,
		       side_name, size, f->size);
		return true;
	}
	for (uint64_t k = 0; k < n; k++) {
		uint64_t off = k * cs, len = size - off < cs ? size - off : cs;
		if (f->chunks[k] == want[k])
			continue;
		printf("FAILED %s: chunk %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64 "): %s has "
		       "%08x, got %08x\n", f->rel, k, off, off + len - 1, side_name, want[k],
		       f->chunks[k]);
		bad = true;
	}
	return bad;
}

static int check_report(const struct options *o, const struct file_list *l, unsigned nskipped,
			const struct cache_chunkmap *side, const char *side_name)
{
	size_t nfailed = 0, nmissing = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct file *f = &l->v[i];
		bool chunks_bad = !f->missing && !f->err && chunks_report(f, side, side_name);

		if (f->missing) {
			printf("MISSING %s\n", f->rel);
			nmissing++;
		} else if (f->err) {
			printf("FAILED %s: %s\n", f->rel, file_problem(f));
			nfailed++;
		} else if (f->crc != f->expected) {
			printf("FAILED %s: expected %08x, got %08x\n", f->rel, f->expected, f->crc);
			nfailed++;
		} else if (chunks_bad) {
			nfailed++;
		} else if (o->verbose) {
			printf("OK %s\n", f->rel);
		}
	}
	if (!o->quiet || nfailed || nmissing || nskipped) {
		printf("%zu files checked, %zu failed, %zu missing\n", l->n, nfailed, nmissing);
		if (nskipped)
			printf("%u malformed manifest entries skipped (see the warnings above)\n",
			       nskipped);
	}
	if (fflush(stdout)) {
		log_err("stdout: %s", strerror(errno));
		return EXIT_PROBLEMS;
	}
	return nfailed || nmissing || nskipped ? EXIT_PROBLEMS : EXIT_GOOD;
}

/*
 * Loads the sidecar @name when it is there (required with --chunks). Returns 0 (*@out set,
 * or NULL when there is none) or an exit status.
 */
static int load_sidecar(const struct options *o, const char *name, struct cache_chunkmap **out)
{
	char err[512];
	char *text = NULL;
	size_t len;
	int rc = read_text(name, &text, &len);

	*out = NULL;
	if (rc == -ENOENT && !o->chunks)
		return 0;
	if (rc < 0) {
		log_err("%s: %s; write it with 'mows-crc32 --chunks %s'", name, strerror(-rc),
			o->dir);
		return EXIT_USAGE;
	}
	*out = cache_chunkmap_parse(text, len, name, 0, NULL, err, sizeof(err));
	free(text);
	if (!*out) {
		log_err("%s", err);
		return errno == ENOMEM ? EXIT_PROBLEMS : EXIT_USAGE;
	}
	return 0;
}

static int check(const struct options *o, int rootfd)
{
	char *path = o->manifest ? strdup(o->manifest) : default_manifest(o->dir);
	struct cache_chunkmap *side = NULL;
	char *side_name = NULL;
	uint64_t cs;
	struct cache_manifest *m = NULL;
	struct file_list l = { 0 };
	unsigned nskipped = 0;
	size_t len;
	char *text = NULL;
	int rc, status = EXIT_USAGE;

	if (!path)
		goto out_nomem;
	rc = read_text(path, &text, &len);
	if (rc < 0) {
		log_err("%s: %s; write one with 'mows-crc32 %s' or name another with -m", path,
			strerror(-rc), o->dir);
		goto out_free;
	}
	m = cache_manifest_parse(text, len, path, &nskipped);
	if (!m || list_manifest(text, len, m, &l) < 0)
		goto out_nomem;
	stat_listed(rootfd, &l);
	side_name = cache_chunkmap_name(path);
	if (!side_name)
		goto out_nomem;
	rc = load_sidecar(o, side_name, &side);
	if (rc) {
		status = rc;
		goto out_free;
	}
	cs = side ? cache_chunkmap_file_chunk_size(side) : 0;
	if ((side && list_want_chunks(&l, cs) < 0) || hash_files(rootfd, &l, o->threads, cs) < 0)
		goto out_nomem;
	status = check_report(o, &l, nskipped, side, side_name);
	goto out_free;

out_nomem:
	log_err("out of memory");
	status = EXIT_PROBLEMS;
out_free:
	list_release(&l);
	cache_chunkmap_free(side);
	free(side_name);
	cache_manifest_free(m);
	free(text);
	free(path);
	return status;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mows-crc32 [--chunks [--chunk-size SIZE]] [-j THREADS] [-o FILE] [-q] DIR\n"
		"       mows-crc32 --check [--chunks] [-m MANIFEST] [-j THREADS] [-v] [-q] DIR\n"
		"\n"
		"Writes the CRC-32 (zlib) of every regular file under DIR, sorted by path, one\n"
		"'crc32 relpath' a line, to DIR/" MANIFEST_NAME " (replaced atomically). Symlinks are\n"
		"not followed; paths with whitespace are skipped with a warning.\n"
		"\n"
		"  -j THREADS  files are read by this many threads (default: online CPUs)\n"
		"  -o FILE     write the manifest to FILE instead; '-' is stdout\n"
		"  --chunks    also write the CRC of every chunk of every file to crc32.chunks\n"
		"              beside the manifest (FILE.chunks for -o FILE.txt), so that mows\n"
		"              catches and names a bad chunk before serving it; with --check:\n"
		"              the sidecar must be there (without, it is checked when present)\n"
		"  --chunk-size SIZE  the sidecar's chunk size, a power of two from 4K to 1G\n"
		"              (default 4M, mows' default chunk_size); it must divide the\n"
		"              daemon's chunk_size to be used\n"
		"  -q          no summary on stderr\n"
		"  --check     verify DIR against its manifest: prints FAILED and MISSING lines\n"
		"              (FAILED ... chunk N (bytes A-B) for a chunk unlike the sidecar)\n"
		"              and a summary; exits 1 if anything failed or is missing\n"
		"  -m FILE     --check: the manifest to read (default DIR/" MANIFEST_NAME ")\n"
		"  -v          --check: print OK lines too\n"
		"  -h, --help  this text\n"
		"\n"
		"Exit status: 0 all good; 1 a file could not be read, did not match or is missing;\n"
		"2 a usage error, DIR is not a directory or the manifest to check cannot be read.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "mows-crc32: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry 'mows-crc32 -h' for help.\n");
	va_end(ap);
	return -EINVAL;
}

static int parse_threads(const char *arg, unsigned *threads)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || n < 1 || n > MAX_THREADS || arg[0] == '-')
		return usage_error("-j '%s': expected a thread count from 1 to %d", arg,
				   MAX_THREADS);
	*threads = (unsigned)n;
	return 0;
}

static int check_combination(const struct options *o, int argc, char **argv)
{
	if (optind == argc)
		return usage_error("no DIR given: name the directory to %s",
				   o->check ? "check" : "hash");
	if (optind + 1 < argc)
		return usage_error("'%s' after DIR '%s': expected exactly one DIR",
				   argv[optind + 1], argv[optind]);
	if (o->check && o->out)
		return usage_error("-o with --check: -o names a manifest to write; "
				   "use -m to name the one to check");
	if (!o->check && o->manifest)
		return usage_error("-m without --check: -m names a manifest to check; "
				   "use -o to name the one to write");
	if (!o->check && o->verbose)
		return usage_error("-v without --check: -v lists the files that --check found OK");
	if (o->chunk_size && !o->chunks)
		return usage_error("--chunk-size without --chunks: it sets the chunk size of the "
				   "crc32.chunks sidecar that --chunks writes");
	if (o->chunk_size && o->check)
		return usage_error("--chunk-size with --check: the sidecar names its own chunk "
				   "size");
	if (o->chunks && !o->check && o->out && strcmp(o->out, "-") == 0)
		return usage_error("--chunks with -o -: the sidecar is written beside the "
				   "manifest, so name a file with -o");
	return 0;
}

/* A power of two from 4K to 1G, in bytes or with a K, M or G suffix. */
static int parse_chunk_size(const char *arg, uint64_t *out)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(arg, &end, 10);
	if (*end == 'K' || *end == 'k')
		n <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		n <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		n <<= 30, end++;
	if (errno || end == arg || *end || arg[0] == '-' || n < CHUNKMAP_MIN_CHUNK ||
	    n > CHUNKMAP_MAX_CHUNK || (n & (n - 1)))
		return usage_error("--chunk-size '%s': expected a power of two from 4K to 1G, "
				   "such as 4M", arg);
	*out = n;
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'c' },
		{ "chunks", no_argument, NULL, 'C' },
		{ "chunk-size", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c, rc;

	o->threads = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (unsigned)ncpu;
	while ((c = getopt_long(argc, argv, "hj:o:m:qv", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->check = true; break;
		case 'C': o->chunks = true; break;
		case 'S':
			if (parse_chunk_size(optarg, &o->chunk_size) < 0)
				return -EINVAL;
			break;
		case 'j':
			if (parse_threads(optarg, &o->threads) < 0)
				return -EINVAL;
			break;
		case 'o': o->out = optarg; break;
		case 'm': o->manifest = optarg; break;
		case 'q': o->quiet = true; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); return 1;
		default:
			fprintf(stderr, "Try 'mows-crc32 -h' for help.\n");
			return -EINVAL;
		}
	}
	o->dir = argv[optind];
	rc = check_combination(o, argc, argv);
	if (!o->chunk_size)
		o->chunk_size = 4ull << 20;
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	int rootfd, rc, status;

	rc = parse_args(argc, argv, &o);
	if (rc)
		return rc > 0 ? EXIT_GOOD : EXIT_USAGE;
	rootfd = open(o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		fprintf(stderr, "mows-crc32: '%s': %s; expected the directory to %s\n", o.dir,
			strerror(errno), o.check ? "check" : "hash");
		return EXIT_USAGE;
	}
	status = o.check ? check(&o, rootfd) : generate(&o, rootfd);
	close(rootfd);
	return status;
}
