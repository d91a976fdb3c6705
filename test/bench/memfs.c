/*
 * memfs: the FUSE baseline for the mows benchmark.
 *
 * A minimal read-only libfuse3 lowlevel filesystem: one flat directory whose regular files
 * are read into memory from SRC at start. Reads are answered straight from that memory, so
 * its throughput is what FUSE itself costs on this machine, with no cache logic at all.
 * Files are opened with keep_cache, like mows, so the kernel page cache behaves the same.
 *
 *   memfs SRC MOUNTPOINT [-f] [-o opt,...]
 *
 * Built by test/bench/run.sh; not part of the daemon.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEMFS_TIMEOUT 3600.0
#define MEMFS_FIRST_INO 2 /* inode 1 is the root directory */

struct memfs_file {
	char *name;
	char *data;
	size_t size;
};

/* Read-only after memfs_load(): the FUSE threads share it without a lock. */
struct memfs {
	struct memfs_file *files;
	size_t nfiles;
};

static struct memfs_file *memfs_file_by_ino(struct memfs *fs, fuse_ino_t ino)
{
	if (ino < MEMFS_FIRST_INO || ino - MEMFS_FIRST_INO >= fs->nfiles)
		return NULL;
	return &fs->files[ino - MEMFS_FIRST_INO];
}

static void memfs_stat(struct memfs *fs, fuse_ino_t ino, struct stat *st)
{
	struct memfs_file *f = memfs_file_by_ino(fs, ino);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (f) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = f->size;
		st->st_blocks = (f->size + 511) / 512;
	} else {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	}
}

static void memfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct memfs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (size_t i = 0; i < fs->nfiles; i++) {
		if (strcmp(fs->files[i].name, name) != 0)
			continue;
		memset(&e, 0, sizeof(e));
		e.ino = MEMFS_FIRST_INO + i;
		e.attr_timeout = MEMFS_TIMEOUT;
		e.entry_timeout = MEMFS_TIMEOUT;
		memfs_stat(fs, e.ino, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	fuse_reply_err(req, ENOENT);
}

static void memfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct memfs *fs = fuse_req_userdata(req);
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && !memfs_file_by_ino(fs, ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memfs_stat(fs, ino, &st);
	fuse_reply_attr(req, &st, MEMFS_TIMEOUT);
}

/* Appends one entry to @buf; returns the new used size, unchanged when it does not fit. */
static size_t memfs_add_dirent(fuse_req_t req, char *buf, size_t used, size_t size,
			       const char *name, fuse_ino_t ino, off_t next)
{
	struct stat st = { .st_ino = ino };
	size_t len = fuse_add_direntry(req, NULL, 0, name, NULL, 0);

	if (used + len > size)
		return used;
	st.st_mode = ino == FUSE_ROOT_ID ? S_IFDIR : S_IFREG;
	fuse_add_direntry(req, buf + used, size - used, name, &st, next);
	return used + len;
}

static void memfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	struct memfs *fs = fuse_req_userdata(req);
	size_t used = 0, n = fs->nfiles + 2;
	char *buf;

	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Offset k means "entries before k were returned": 0 ".", 1 "..", 2.. the files. */
	for (size_t k = off; k < n; k++) {
		const char *name = k == 0 ? "." : k == 1 ? ".." : fs->files[k - 2].name;
		fuse_ino_t eino = k < 2 ? FUSE_ROOT_ID : MEMFS_FIRST_INO + k - 2;
		size_t next = memfs_add_dirent(req, buf, used, size, name, eino, k + 1);

		if (next == used)
			break;
		used = next;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void memfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct memfs *fs = fuse_req_userdata(req);

	if (!memfs_file_by_ino(fs, ino)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void memfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct memfs_file *f = memfs_file_by_ino(fuse_req_userdata(req), ino);

	(void)fi;
	if (!f) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if ((size_t)off >= f->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > f->size - off)
		size = f->size - off;
	fuse_reply_buf(req, f->data + off, size);
}

static const struct fuse_lowlevel_ops memfs_ops = {
	.lookup = memfs_lookup,
	.getattr = memfs_getattr,
	.readdir = memfs_readdir,
	.open = memfs_open,
	.read = memfs_read,
};

/* Reads all of @path into anonymous memory. Returns 0 or -errno. */
static int memfs_load_file(int dirfd, const char *name, struct memfs_file *f)
{
	struct stat st;
	size_t done = 0;
	int fd, rc = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	f->size = st.st_size;
	f->data = mmap(NULL, f->size ? f->size : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->data == MAP_FAILED) {
		rc = -errno;
		goto out_close;
	}
	/* Huge pages for the baseline too, so it is not slowed by TLB misses mows avoids. */
	madvise(f->data, f->size, MADV_HUGEPAGE);
	while (done < f->size) {
		ssize_t n = read(fd, f->data + done, f->size - done);

		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out_unmap;
		}
		done += n;
	}
	f->name = strdup(name);
	if (!f->name) {
		rc = -ENOMEM;
		goto out_unmap;
	}
	close(fd);
	return 0;

out_unmap:
	munmap(f->data, f->size ? f->size : 1);
out_close:
	close(fd);
	return rc;
}

/* Loads every regular file of @src. Returns 0 or -errno, with a message printed. */
static int memfs_load(struct memfs *fs, const char *src)
{
	struct dirent *de;
	DIR *dir;
	int rc = 0;

	dir = opendir(src);
	if (!dir) {
		rc = -errno;
		fprintf(stderr, "memfs: %s: %s\n", src, strerror(-rc));
		return rc;
	}
	while ((de = readdir(dir)) != NULL) {
		struct memfs_file *grown;
		struct stat st;

		if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		grown = realloc(fs->files, (fs->nfiles + 1) * sizeof(*grown));
		if (!grown) {
			rc = -ENOMEM;
			break;
		}
		fs->files = grown;
		rc = memfs_load_file(dirfd(dir), de->d_name, &fs->files[fs->nfiles]);
		if (rc < 0) {
			fprintf(stderr, "memfs: %s/%s: %s\n", src, de->d_name, strerror(-rc));
			break;
		}
		fs->nfiles++;
	}
	closedir(dir);
	return rc;
}

static void memfs_release(struct memfs *fs)
{
	for (size_t i = 0; i < fs->nfiles; i++) {
		munmap(fs->files[i].data, fs->files[i].size ? fs->files[i].size : 1);
		free(fs->files[i].name);
	}
	free(fs->files);
}

int main(int argc, char *argv[])
{
	struct fuse_args args;
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_loop_config *loop;
	struct fuse_session *se;
	struct memfs fs = { 0 };
	int rc = 1;

	if (argc < 3 || argv[1][0] == '-') {
		fprintf(stderr, "usage: %s SRC MOUNTPOINT [-f] [-o opt,...]\n", argv[0]);
		return 1;
	}
	if (memfs_load(&fs, argv[1]) < 0)
		goto out_release;
	/* Hand libfuse the arguments without SRC. */
	argv[1] = argv[0];
	args = (struct fuse_args)FUSE_ARGS_INIT(argc - 1, argv + 1);
	if (fuse_parse_cmdline(&args, &opts) != 0 || !opts.mountpoint) {
		fprintf(stderr, "memfs: expected a mountpoint after SRC\n");
		goto out_args;
	}
	se = fuse_session_new(&args, &memfs_ops, sizeof(memfs_ops), &fs);
	if (!se)
		goto out_opts;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	fuse_daemonize(opts.foreground);
	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(loop, opts.max_threads);
	fuse_loop_cfg_set_clone_fd(loop, opts.clone_fd);
	rc = fuse_session_loop_mt(se, loop) != 0;
	fuse_loop_cfg_destroy(loop);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_opts:
	free(opts.mountpoint);
out_args:
	fuse_opt_free_args(&args);
out_release:
	memfs_release(&fs);
	return rc;
}
