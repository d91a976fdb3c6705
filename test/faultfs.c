/*
 * faultfs: a read-only FUSE mirror of a directory that injects faults into reads, for tests.
 *
 *   faultfs [--rules FILE] SOURCE MOUNTPOINT [FUSE options, e.g. -f -o allow_other]
 *
 * Files open with direct_io, so every read() of the mount reaches faultfs (no page cache
 * hides a fault) and a short read reaches the reader as it is. The rules file holds one rule
 * a line ('#' starts a comment):
 *
 *   PATH OFFSET LENGTH ACTION [ARG] [times=N]
 *
 * PATH is relative to SOURCE (under 512 bytes), or '*' for every file; OFFSET and LENGTH are bytes (LENGTH
 * '-' for "to the end"). A rule applies to a read that overlaps [OFFSET, OFFSET+LENGTH):
 *   eio          the read fails with EIO
 *   short        the read returns only the bytes before OFFSET, or, if it starts inside the
 *                range, half of what was asked (at least one byte): legal, a reader loops
 *   eof          like short, but a read starting inside the range returns 0 (early EOF)
 *   stall SECS   the read sleeps SECS seconds (may be fractional), then goes on
 *   flip [MASK]  the bytes of the range that the read returns are XORed with MASK (0x01)
 * times=N makes a rule fire N times only. Rules apply in file order; eio ends the read.
 * The rules file is read again whenever it changes (checked on every open and read) and on
 * SIGHUP; write it atomically (write a new file, rename it over). A rules file that does not
 * parse stops start-up with exit 2; at run time it is logged and the old rules stay.
 * Every fault that fires is logged to stderr: "faultfs: ACTION PATH off=N len=N".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

enum fault { F_EIO, F_SHORT, F_EOF, F_STALL, F_FLIP };
static const char *const fault_names[] = { "eio", "short", "eof", "stall", "flip" };

struct rule {
	char path[512];
	uint64_t off, len;       /* len UINT64_MAX: to the end */
	enum fault kind;
	double secs;             /* stall */
	uint8_t mask;            /* flip */
	long times;              /* -1: unlimited; protected by fs.lock */
};

#define MAX_RULES 256

static struct {
	int root;                /* the source directory */
	const char *rules_path;
	pthread_mutex_t lock;
	struct rule rules[MAX_RULES];   /* protected by lock */
	unsigned nrules;                /* protected by lock */
	struct stat rules_st;           /* the version loaded; protected by lock */
	volatile sig_atomic_t reload;
} fs = { .root = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static int parse_rule(char *line, struct rule *r, const char **why)
{
	char *save = NULL, *w[6] = { 0 };
	unsigned n = 0;
	for (char *t = strtok_r(line, " \t", &save); t && n < 6; t = strtok_r(NULL, " \t", &save))
		w[n++] = t;
	memset(r, 0, sizeof(*r));
	r->times = -1;
	r->mask = 1;
	*why = "expected PATH OFFSET LENGTH ACTION [ARG] [times=N]";
	if (n < 4)
		return -1;
	if (n > 4 && !strncmp(w[n - 1], "times=", 6)) {
		char *end;
		r->times = strtol(w[n - 1] + 6, &end, 10);
		if (*end || r->times < 1)
			return *why = "times=N needs N >= 1", -1;
		n--;
	}
	snprintf(r->path, sizeof(r->path), "%s", w[0][0] == '/' ? w[0] + 1 : w[0]);
	char *end;
	r->off = strtoull(w[1], &end, 0);
	if (*end || w[1][0] == '-')
		return *why = "OFFSET is a number of bytes", -1;
	if (!strcmp(w[2], "-"))
		r->len = UINT64_MAX;
	else if ((r->len = strtoull(w[2], &end, 0)) == 0 || *end || w[2][0] == '-')
		return *why = "LENGTH is a number of bytes > 0 or '-'", -1;
	unsigned k;
	for (k = 0; k < 5 && strcmp(w[3], fault_names[k]); k++)
		;
	if (k == 5)
		return *why = "ACTION is eio, short, eof, stall or flip", -1;
	r->kind = (enum fault)k;
	if (r->kind == F_STALL) {
		if (n < 5 || (r->secs = strtod(w[4], &end)) < 0 || *end)
			return *why = "stall needs SECS", -1;
	} else if (r->kind == F_FLIP && n > 4) {
		unsigned long m = strtoul(w[4], &end, 0);
		if (*end || m == 0 || m > 255)
			return *why = "flip MASK is 1..255", -1;
		r->mask = (uint8_t)m;
	} else if (n > 4) {
		return *why = "this ACTION takes no ARG", -1;
	}
	return 0;
}

/* Loads the rules file if it changed. Returns 0, or -1 after logging why not. */
static int load_rules(bool force)
{
	struct stat st;
	if (!fs.rules_path)
		return 0;
	if (stat(fs.rules_path, &st) < 0) {
		fprintf(stderr, "faultfs: rules file %s: %s\n", fs.rules_path, strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&fs.lock);
	bool same = !force && st.st_ino == fs.rules_st.st_ino && st.st_size == fs.rules_st.st_size &&
		    st.st_mtim.tv_sec == fs.rules_st.st_mtim.tv_sec &&
		    st.st_mtim.tv_nsec == fs.rules_st.st_mtim.tv_nsec;
	pthread_mutex_unlock(&fs.lock);
	if (same)
		return 0;
	FILE *fp = fopen(fs.rules_path, "re");
	if (!fp) {
		fprintf(stderr, "faultfs: rules file %s: %s\n", fs.rules_path, strerror(errno));
		return -1;
	}
	static struct rule fresh[MAX_RULES]; /* only under load_lock */
	static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&load_lock);
	char line[PATH_MAX + 256];
	unsigned n = 0, lineno = 0;
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), fp)) {
		const char *why;
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		char *p = line + strspn(line, " \t");
		if (!*p || *p == '#')
			continue;
		if (n == MAX_RULES || parse_rule(p, &fresh[n], &why)) {
			fprintf(stderr, "faultfs: %s:%u: %s\n", fs.rules_path, lineno,
				n == MAX_RULES ? "more than 256 rules" : why);
			rc = -1;
		}
		n++;
	}
	fclose(fp);
	if (rc == 0) {
		pthread_mutex_lock(&fs.lock);
		memcpy(fs.rules, fresh, n * sizeof(*fresh));
		fs.nrules = n;
		fs.rules_st = st;
		pthread_mutex_unlock(&fs.lock);
		fprintf(stderr, "faultfs: %u rule(s) from %s\n", n, fs.rules_path);
	}
	pthread_mutex_unlock(&load_lock);
	return rc;
}

static void on_hup(int sig)
{
	(void)sig;
	fs.reload = 1;
}

static void maybe_reload(void)
{
	bool force = fs.reload;
	fs.reload = 0;
	load_rules(force);
}

/* "/a/b" -> "a/b", "/" -> "." */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

static int ff_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	return fstatat(fs.root, rel(path), st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int ff_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n = readlinkat(fs.root, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int ff_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off, (void)fi, (void)flags;
	int fd = openat(fs.root, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd < 0 ? NULL : fdopendir(fd);
	if (!dp) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct dirent *de;
	while ((de = readdir(dp))) {
		struct stat st = { .st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type) };
		if (fill(buf, de->d_name, &st, 0, 0))
			break;
	}
	closedir(dp);
	return 0;
}

static int ff_open(const char *path, struct fuse_file_info *fi)
{
	maybe_reload();
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	int fd = openat(fs.root, rel(path), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	fi->direct_io = 1;
	return 0;
}

static int ff_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int ff_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(fs.root, sv) < 0 ? -errno : 0;
}

/* The rules for @p that overlap [off, off+len), copied out, their counts taken. */
static unsigned matching(const char *p, uint64_t off, uint64_t len, struct rule *out)
{
	unsigned n = 0;
	pthread_mutex_lock(&fs.lock);
	for (unsigned i = 0; i < fs.nrules; i++) {
		struct rule *r = &fs.rules[i];
		uint64_t end = r->len == UINT64_MAX || r->off + r->len < r->off ? UINT64_MAX :
			       r->off + r->len;
		if ((strcmp(r->path, "*") && strcmp(r->path, p)) || off >= end ||
		    off + len <= r->off || r->times == 0)
			continue;
		if (r->times > 0)
			r->times--;
		out[n++] = *r;
	}
	pthread_mutex_unlock(&fs.lock);
	return n;
}

static void note(const struct rule *r, const char *p, uint64_t off, size_t len)
{
	fprintf(stderr, "faultfs: %s %s off=%" PRIu64 " len=%zu\n", fault_names[r->kind], p, off,
		len);
}

static int ff_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	maybe_reload();
	ssize_t got = pread((int)fi->fh, buf, size, off);
	if (got < 0)
		return -errno;
	if (got == 0)
		return 0;
	struct rule hit[MAX_RULES];
	const char *p = rel(path);
	uint64_t o = (uint64_t)off, n = (uint64_t)got;
	unsigned k = matching(p, o, n, hit);
	for (unsigned i = 0; i < k; i++) {
		const struct rule *r = &hit[i];
		note(r, p, o, (size_t)n);
		switch (r->kind) {
		case F_EIO:
			return -EIO;
		case F_STALL: {
			struct timespec ts = { (time_t)r->secs,
					       (long)((r->secs - (double)(time_t)r->secs) * 1e9) };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
			break;
		}
		case F_SHORT:
		case F_EOF:
			if (o < r->off)
				n = r->off - o;
			else
				n = r->kind == F_EOF ? 0 : (n / 2 ? n / 2 : 1);
			break;
		case F_FLIP: {
			uint64_t from = o > r->off ? o : r->off;
			uint64_t to = r->len == UINT64_MAX || r->off + r->len > o + n ? o + n :
				      r->off + r->len;
			for (uint64_t x = from; x < to; x++)
				buf[x - o] ^= (char)r->mask;
			break;
		}
		}
	}
	return (int)n;
}

static void *ff_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	/* after fuse_main's own handlers, which would take SIGHUP as "unmount" */
	struct sigaction sa = { .sa_handler = on_hup };
	sigaction(SIGHUP, &sa, NULL);
	cfg->use_ino = 1;
	cfg->kernel_cache = 0;
	return NULL;
}

static const struct fuse_operations ff_ops = {
	.init = ff_init,
	.getattr = ff_getattr,
	.readlink = ff_readlink,
	.readdir = ff_readdir,
	.open = ff_open,
	.release = ff_release,
	.read = ff_read,
	.statfs = ff_statfs,
};

int main(int argc, char **argv)
{
	int i = 1;
	if (i + 1 < argc && !strcmp(argv[i], "--rules")) {
		/* absolute: FUSE may chdir("/") */
		fs.rules_path = realpath(argv[i + 1], NULL);
		if (!fs.rules_path) {
			fprintf(stderr, "faultfs: rules file %s: %s\n", argv[i + 1], strerror(errno));
			return 2;
		}
		i += 2;
	}
	if (argc - i < 2) {
		fprintf(stderr, "usage: faultfs [--rules FILE] SOURCE MOUNTPOINT [FUSE options]\n");
		return 2;
	}
	fs.root = open(argv[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs.root < 0) {
		fprintf(stderr, "faultfs: %s: %s (give a directory to mirror)\n", argv[i],
			strerror(errno));
		return 2;
	}
	if (load_rules(true))
		return 2;
	/* FUSE sees: argv[0] MOUNTPOINT [options] -o ro,fsname=faultfs */
	char **fargv = calloc((size_t)argc + 3, sizeof(*fargv));
	int fargc = 0;
	if (!fargv)
		return 1;
	fargv[fargc++] = argv[0];
	for (int k = i + 1; k < argc; k++)
		fargv[fargc++] = argv[k];
	fargv[fargc++] = "-o";
	fargv[fargc++] = "ro,fsname=faultfs,default_permissions,max_threads=64";
	setvbuf(stderr, NULL, _IOLBF, 0);
	return fuse_main(fargc, fargv, &ff_ops, NULL);
}
