/*
 * mows-crc32: writes crc32.txt, the manifest of whole-file CRC-32s that mows verifies backing
 * files against (format in cache/manifest.h), or checks a directory against one.
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
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
};

struct file_list {
	struct file *v;
	size_t n, cap;
};

struct piece {
	size_t file;
	uint64_t off, len;
	uint32_t crc;
	int err;
	const char *why;
};

/* Shared by the hashing threads; each writes only the pieces it took. */
struct hasher {
	int rootfd;
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
	bool check, quiet, verbose;
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
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].rel);
	free(l->v);
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

static int piece_read(int fd, struct piece *pc, char *buf)
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
		rc = piece_read(fd, pc, buf);
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

static size_t pieces_of(const struct file *f)
{
	if (f->err || f->missing)
		return 0;
	return f->size ? (size_t)((f->size + PIECE_SIZE - 1) / PIECE_SIZE) : 1;
}

/* Cuts every file still to hash into pieces, in file order and offset order. */
static struct piece *pieces_plan(const struct file_list *l, size_t *npieces)
{
	struct piece *pieces;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < l->n; i++)
		n += pieces_of(&l->v[i]);
	pieces = calloc(n ? n : 1, sizeof(*pieces));
	if (!pieces)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		for (size_t p = 0; p < pieces_of(&l->v[i]); p++) {
			uint64_t off = p * PIECE_SIZE, rest = l->v[i].size - off;
			pieces[k++] = (struct piece){
				.file = i, .off = off, .len = rest < PIECE_SIZE ? rest : PIECE_SIZE,
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
static int hash_files(int rootfd, struct file_list *l, unsigned nthreads)
{
	struct hasher h = { .rootfd = rootfd, .files = l->v };
	int rc;

	h.pieces = pieces_plan(l, &h.npieces);
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
	} skip[2]; /* manifests, old or being written: never listed */
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

/* Replaces @target in one rename, so that a reader sees the old manifest or the new one. */
static int write_atomically(const char *target, const struct file_list *l, mode_t mode)
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
		rc = write_lines(f, l);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
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

static int generate_finish(struct walk *w, const char *target)
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
	rc = target ? write_atomically(target, &w->files, 0666 & ~mask)
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

	if (w->nskip < 2 && fstatat(dirfd, path, &st, 0) == 0) {
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
	}
	if (o->out)
		skip_file(&w, rootfd, MANIFEST_NAME);
	/* Its own open file description: walk_dir() reads and closes it. */
	walkfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (walkfd < 0) {
		log_err("%s: %s", o->dir, strerror(errno));
		goto out_free;
	}
	rc = walk_dir(&w, walkfd, "");
	if (!rc) {
		list_sort_unique(&w.files);
		rc = hash_files(rootfd, &w.files, o->threads);
	}
	if (rc < 0)
		goto out_nomem;
	status = generate_finish(&w, target);
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

static int check_report(const struct options *o, const struct file_list *l, unsigned nskipped)
{
	size_t nfailed = 0, nmissing = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct file *f = &l->v[i];

		if (f->missing) {
			printf("MISSING %s\n", f->rel);
			nmissing++;
		} else if (f->err) {
			printf("FAILED %s: %s\n", f->rel, file_problem(f));
			nfailed++;
		} else if (f->crc != f->expected) {
			printf("FAILED %s: expected %08x, got %08x\n", f->rel, f->expected, f->crc);
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

static int check(const struct options *o, int rootfd)
{
	char *path = o->manifest ? strdup(o->manifest) : default_manifest(o->dir);
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
	if (hash_files(rootfd, &l, o->threads) < 0)
		goto out_nomem;
	status = check_report(o, &l, nskipped);
	goto out_free;

out_nomem:
	log_err("out of memory");
	status = EXIT_PROBLEMS;
out_free:
	list_release(&l);
	cache_manifest_free(m);
	free(text);
	free(path);
	return status;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mows-crc32 [-j THREADS] [-o FILE] [-q] DIR\n"
		"       mows-crc32 --check [-m MANIFEST] [-j THREADS] [-v] [-q] DIR\n"
		"\n"
		"Writes the CRC-32 (zlib) of every regular file under DIR, sorted by path, one\n"
		"'crc32 relpath' a line, to DIR/" MANIFEST_NAME " (replaced atomically). Symlinks are\n"
		"not followed; paths with whitespace are skipped with a warning.\n"
		"\n"
		"  -j THREADS  files are read by this many threads (default: online CPUs)\n"
		"  -o FILE     write the manifest to FILE instead; '-' is stdout\n"
		"  -q          no summary on stderr\n"
		"  --check     verify DIR against its manifest: prints FAILED and MISSING lines\n"
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
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c;

	o->threads = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (unsigned)ncpu;
	while ((c = getopt_long(argc, argv, "hj:o:m:qv", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->check = true; break;
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
	return check_combination(o, argc, argv);
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
