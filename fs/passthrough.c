/*
 * FUSE passthrough onto the cache's files (kernel >= 6.9; libfuse 3.14 has no API for it).
 *
 * mows opens /dev/fuse and mounts it itself, then hands the descriptor to libfuse with
 * fuse_session_custom_io(): our read hook notes the INIT request, our writev hook adds
 * FUSE_INIT_EXT, the passthrough bit of flags2 and max_stack_depth to libfuse's INIT reply.
 * An open of a complete, verified file then registers its cache file with the kernel
 * (FUSE_DEV_IOC_BACKING_OPEN) and replies FOPEN_PASSTHROUGH with the backing id: read() and
 * mmap go straight to the cache's pages.
 *
 * The wire structs and ioctls below are the kernel's uapi <linux/fuse.h> of 6.9+ (Debian 12's
 * headers predate them), written out here; the kernel checks the sizes.
 */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/mows.h"
#include "fs/supervisor.h"

#define PT_OP_INIT 26
#define PT_INIT_EXT (1u << 30)
#define PT_FLAGS2_PASSTHROUGH (1u << 5)  /* FUSE_PASSTHROUGH = bit 37 of the 64-bit flags */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_STACK_DEPTH 1
/* The unique of the INIT a supervised child replays (never a kernel's: those are small). */
#define REPLAY_UNIQUE ((1ull << 62) | 2)

enum { INIT_WAITING, INIT_REPLAY, INIT_REPLAYING, INIT_DONE };

struct pt_in_header {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};
_Static_assert(sizeof(struct pt_in_header) == 40, "fuse_in_header");

struct pt_init_in {
	uint32_t major, minor, max_readahead, flags, flags2;
	uint32_t unused[11];
};

struct pt_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};
_Static_assert(sizeof(struct pt_out_header) == 16, "fuse_out_header");

struct pt_init_out {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2, max_stack_depth;
	uint16_t request_timeout, unused[11];
};
_Static_assert(sizeof(struct pt_init_out) == 64, "fuse_init_out");

struct pt_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};
_Static_assert(sizeof(struct pt_open_out) == 16, "fuse_open_out");

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* ---- detection ---- */

static bool kernel_at_least(int want_major, int want_minor, char *rel, size_t len)
{
	struct utsname u;
	int major = 0, minor = 0;
	if (uname(&u) < 0)
		return false;
	snprintf(rel, len, "%s", u.release);
	if (sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return false;
	return major > want_major || (major == want_major && minor >= want_minor);
}

/* CAP_SYS_ADMIN (bit 21) in the effective set; the backing ioctl needs it. */
static bool have_sys_admin(void)
{
	char line[256];
	unsigned long long eff = 0;
	FILE *fp = fopen("/proc/self/status", "r");
	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(fp);
	return eff & (1ull << 21);
}

int mows_pt_detect(struct mows *m, char *err, size_t errlen)
{
	char rel[128] = "?", why[256] = "";
	m->fuse_fd = -1;
	if (m->cfg.passthrough == PASSTHROUGH_OFF)
		snprintf(why, sizeof(why), "passthrough = off");
	else if (!cache_has_store(m->cache))
		snprintf(why, sizeof(why), "the cache is in the slab, not in files (cache_store)");
	else if (!kernel_at_least(6, 9, rel, sizeof(rel)))
		snprintf(why, sizeof(why), "kernel %s has no FUSE passthrough (needs 6.9)", rel);
	else if (!have_sys_admin())
		snprintf(why, sizeof(why), "no CAP_SYS_ADMIN (run as root)");
	if (why[0] && m->cfg.passthrough == PASSTHROUGH_ON) {
		snprintf(err, errlen, "passthrough = on: not possible here: %s; set passthrough = "
			 "auto or off", why);
		return -EINVAL;
	}
	m->pt_wanted = !why[0];
	if (why[0])
		log_info("passthrough: off (%s); files are served through the daemon", why);
	else
		log_info("passthrough: on (kernel %s): complete, verified files open onto their "
			 "cache files%s", rel, m->cfg.open_wait == OPEN_WAIT_COMPLETE ?
			 "; opens wait for completion (open_wait = complete)" : "");
	return 0;
}

/* ---- the device, with the INIT reply adjusted ---- */

/* Notes an INIT request (the kernel's, or the one replayed) for the writev hook. */
static void note_init(struct mows *m, const void *buf, size_t n)
{
	const struct pt_in_header *h = buf;
	struct pt_init_in in = { 0 };
	m->init_len = n - sizeof(*h) < sizeof(m->init_in) ? n - sizeof(*h) : sizeof(m->init_in);
	memcpy(m->init_in, (const char *)buf + sizeof(*h), m->init_len);
	memcpy(&in, m->init_in, m->init_len < sizeof(in) ? m->init_len : sizeof(in));
	bool offered = (in.flags & PT_INIT_EXT) && (in.flags2 & PT_FLAGS2_PASSTHROUGH);
	if (!offered && m->pt_wanted)
		log_warn("passthrough: the kernel did not offer it at INIT (protocol 7.%u; "
			 "CONFIG_FUSE_PASSTHROUGH?); files are served through the daemon",
			 in.minor);
	atomic_store(&m->init_unique, h->unique);
	atomic_store(&m->pt_offered, offered);
}

/*
 * A supervised child taking over a live connection: the INIT a previous child answered,
 * as the first request libfuse reads (libfuse answers nothing before an INIT).
 */
static ssize_t replay_init(struct mows *m, void *buf, size_t len)
{
	size_t body;
	bool pt;
	const void *init = super_child_init(m->super, &body, &pt);
	struct pt_in_header h = { .len = (uint32_t)(sizeof(h) + body), .opcode = PT_OP_INIT,
				  .unique = REPLAY_UNIQUE };
	if (len < h.len) {
		errno = EINVAL;
		return -1;
	}
	memcpy(buf, &h, sizeof(h));
	memcpy((char *)buf + sizeof(h), init, body);
	note_init(m, buf, h.len);
	return h.len;
}

/*
 * The kernel's INIT again, after a replay: the previous child recorded it and died before
 * its answer went out, and the supervisor's FUSE_NOTIFY_RESEND queued it once more. libfuse
 * would refuse a second INIT (and the connection with it): the answer libfuse gave the
 * replay is the one the kernel is waiting for.
 */
_Static_assert(sizeof(((struct mows *)0)->init_reply) ==
	       sizeof(struct pt_out_header) + sizeof(struct pt_init_out), "init_reply");

static void answer_init_again(struct mows *m, int fd, uint64_t unique)
{
	struct pt_out_header *oh = (struct pt_out_header *)m->init_reply;
	oh->unique = unique;
	if (write(fd, m->init_reply, m->init_reply_len) != (ssize_t)m->init_reply_len)
		log_err("supervisor: cannot answer the kernel's INIT again: %s", strerror(errno));
	else
		log_info("supervisor: the kernel's INIT came again (the previous process died "
			 "answering it): answered as negotiated");
}

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	struct mows *m = userdata;
	int st = INIT_REPLAY;
	if (atomic_compare_exchange_strong(&m->init_replay, &st, INIT_REPLAYING))
		return replay_init(m, buf, len);
	/* Another worker: no request may reach libfuse before it has taken the INIT. */
	while (atomic_load(&m->init_replay) == INIT_REPLAYING)
		usleep(1000);
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n < (ssize_t)sizeof(struct pt_in_header))
			return n;
		const struct pt_in_header *h = buf;
		if (h->opcode != PT_OP_INIT)
			return n;
		if (!m->init_reply_len || atomic_load(&m->init_replay) != INIT_DONE) {
			note_init(m, buf, (size_t)n);
			return n;
		}
		answer_init_again(m, fd, h->unique);
	}
}

static size_t iov_total(const struct iovec *iov, int count)
{
	size_t n = 0;
	for (int k = 0; k < count; k++)
		n += iov[k].iov_len;
	return n;
}

/* Asks for passthrough in an INIT reply (header and struct pt_init_out). */
static void ask_passthrough(unsigned char *reply)
{
	struct pt_init_out *out = (struct pt_init_out *)(reply + sizeof(struct pt_out_header));
	out->flags |= PT_INIT_EXT;
	out->flags2 |= PT_FLAGS2_PASSTHROUGH;
	out->max_stack_depth = PT_STACK_DEPTH;
}

/*
 * libfuse's answer to the kernel's INIT, with passthrough asked for when it was offered and
 * is wanted; a supervised child records it with the supervisor before it goes out.
 */
static ssize_t answer_init(struct mows *m, int fd, const struct iovec *iov, int count)
{
	unsigned char buf[sizeof(struct pt_out_header) + sizeof(struct pt_init_out)];
	size_t len = iov_total(iov, count), at = 0;
	if (len > sizeof(buf))
		return -1;
	for (int k = 0; k < count; k++) {
		memcpy(buf + at, iov[k].iov_base, iov[k].iov_len);
		at += iov[k].iov_len;
	}
	struct pt_out_header *oh = (struct pt_out_header *)buf;
	bool pt = !oh->error && len == sizeof(buf) && m->pt_wanted && atomic_load(&m->pt_offered);
	if (pt)
		ask_passthrough(buf);
	if (m->super && !oh->error) {
		super_child_report_init(m->super, m->init_in, m->init_len, pt);
		super_child_test_crash("answering INIT");
	}
	ssize_t n = write(fd, buf, len);
	if (n == (ssize_t)len && pt)
		atomic_store(&m->pt_negotiated, true);
	atomic_store(&m->init_replay, INIT_DONE);
	return n;
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct mows *m = userdata;
	if (count < 1 || iov[0].iov_len < sizeof(struct pt_out_header) ||
	    atomic_load(&m->init_replay) == INIT_DONE)
		return writev(fd, iov, count);
	const struct pt_out_header *oh = iov[0].iov_base;
	if (oh->unique == REPLAY_UNIQUE && atomic_load(&m->init_replay) == INIT_REPLAYING) {
		/* The kernel negotiated once, with the first child: this answer stays here. */
		size_t body, n = iov_total(iov, count);
		bool pt;
		super_child_init(m->super, &body, &pt);
		atomic_store(&m->pt_negotiated, !oh->error && pt && m->pt_wanted);
		if (!oh->error && n == sizeof(m->init_reply)) { /* for answer_init_again() */
			for (int k = 0, at = 0; k < count; at += (int)iov[k].iov_len, k++)
				memcpy(m->init_reply + at, iov[k].iov_base, iov[k].iov_len);
			if (pt && m->pt_wanted)
				ask_passthrough(m->init_reply);
			m->init_reply_len = n;
		}
		atomic_store(&m->init_replay, INIT_DONE);
		log_info("supervisor: serving the mount's connection as it was negotiated%s",
			 pt ? " (with passthrough)" : "");
		return (ssize_t)iov_total(iov, count);
	}
	if (oh->unique && oh->unique == atomic_load(&m->init_unique)) {
		ssize_t n = answer_init(m, fd, iov, count);
		if (n >= 0)
			return n;
	}
	return writev(fd, iov, count);
}

/* Supervised, after a restart: the connection is there, its INIT is replayed. */
static int take_over(struct mows *m, const struct fuse_custom_io *io)
{
	int fd = super_child_fuse_fd(m->super);
	size_t body;
	bool pt;
	if (fuse_session_custom_io(m->se, io, fd) < 0)
		return -1;
	m->fuse_fd = fd;
	if (super_child_init(m->super, &body, &pt))
		atomic_store(&m->init_replay, INIT_REPLAY);
	else
		log_warn("supervisor: no INIT was recorded for this mount; waiting for the kernel's");
	log_info("supervisor: taking over the mount of %s (restart %u)", m->mountpoint,
		 super_child_restarts(m->super));
	return 0;
}

int mows_pt_mount(struct mows *m, const char *fsname)
{
	static const struct fuse_custom_io io = { .read = pt_read, .writev = pt_writev };
	char opts[256];
	if (m->super && super_child_fuse_fd(m->super) >= 0)
		return take_over(m, &io);
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		log_err("cannot open /dev/fuse: %s", strerror(errno));
		return -1;
	}
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,"
		 "default_permissions,allow_other", fd);
	if (mount(fsname, m->mountpoint, "fuse.mows", MS_RDONLY | MS_NOSUID | MS_NODEV,
		  opts) < 0) {
		log_err("cannot mount %s: %s", m->mountpoint, strerror(errno));
		close(fd);
		return -1;
	}
	if (fuse_session_custom_io(m->se, &io, fd) < 0 ||
	    (m->super && super_child_send_fd(m->super, fd) < 0)) {
		log_err("cannot serve the mount of %s: %s", m->mountpoint, strerror(errno));
		umount2(m->mountpoint, MNT_DETACH);
		close(fd);
		return -1;
	}
	m->fuse_fd = fd;
	return 0;
}

void mows_pt_unmount(struct mows *m)
{
	if (m->fuse_fd < 0 || m->super) /* supervised: the mount outlives this process */
		return;
	/* POLLERR: already unmounted (fusermount3 -u) or aborted. Then whatever is mounted
	 * there now is not ours (in overmount mode, what mows was mounted over): leave it. */
	struct pollfd pfd = { .fd = m->fuse_fd };
	if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR))
		return;
	if (umount2(m->mountpoint, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		log_warn("cannot unmount %s: %s", m->mountpoint, strerror(errno));
}

/* ---- opens ---- */

/* Supervised: the counts of @in go to the shared table too (ino_lock held). */
static void do_rec_sync(struct mows *m, struct mows_inode *in)
{
	if (!m->super)
		return;
	if (!in->rec && (in->opens_plain || in->opens_pt))
		in->rec = super_opens_rec(m->super, in->nodeid, true);
	if (!in->rec)
		return;
	in->rec->backing_id = in->backing_id;
	in->rec->pt = in->opens_pt;
	in->rec->plain = in->opens_plain;
	if (!in->opens_plain && !in->opens_pt)
		in->rec = NULL;
}

/* One kernel backing for @in, on its first passthrough open. Lock held. */
static int do_backing_open(struct mows *m, struct mows_inode *in, int cache_fd)
{
	struct pt_backing_map map = { .fd = cache_fd };
	int id = ioctl(m->fuse_fd, PT_IOC_BACKING_OPEN, &map);
	if (id < 0) {
		int e = errno;
		if (!atomic_exchange(&m->pt_failed, true))
			log_warn("passthrough: the kernel refused the backing file of %s: %s; "
				 "files are served through the daemon from now on", in->relpath,
				 strerror(e));
		return -e;
	}
	in->backing_id = id;
	log_debug("passthrough: %s opens onto its cache file (backing %d)", in->relpath, id);
	return 0;
}

static void do_backing_close(struct mows *m, struct mows_inode *in)
{
	uint32_t id = (uint32_t)in->backing_id;
	if (ioctl(m->fuse_fd, PT_IOC_BACKING_CLOSE, &id) < 0)
		log_warn("passthrough: cannot close backing %u of %s: %s", id, in->relpath,
			 strerror(errno));
	in->backing_id = -1;
}

bool mows_pt_usable(struct mows *m)
{
	return m->fuse_fd >= 0 && atomic_load(&m->pt_negotiated) && !atomic_load(&m->pt_failed);
}

/*
 * Every open of one inode that is open at the same time uses one mode (the kernel fails a
 * mix with EIO): while ordinary opens exist new ones are ordinary, while passthrough opens
 * exist new ones share their backing. ino_lock is held across the backing ioctl (a quick
 * call into /dev/fuse, no I/O) so that two first opens cannot pick different modes.
 */
int mows_pt_open(struct mows *m, struct mows_inode *in, struct cache_file *f, bool *pt)
{
	*pt = false;
	pthread_mutex_lock(&m->ino_lock);
	if (in->opens_pt) {
		int fd = cache_file_passthrough_get(m->cache, f); /* pinned: only EMFILE */
		if (fd >= 0) {
			close(fd);
			in->opens_pt++;
			*pt = true;
		}
	} else if (!in->opens_plain && mows_pt_usable(m)) {
		int fd = cache_file_passthrough_get(m->cache, f);
		if (fd >= 0 && do_backing_open(m, in, fd) == 0) {
			in->opens_pt = 1;
			*pt = true;
		} else if (fd >= 0) {
			cache_file_passthrough_put(m->cache, f);
		}
		if (fd >= 0)
			close(fd); /* the kernel's backing holds the file now */
	}
	if (!*pt)
		in->opens_plain++;
	if (*pt) {
		atomic_fetch_add(&m->pt_opens, 1);
		atomic_fetch_add(&m->pt_bytes_opened, in->size);
		atomic_fetch_add(&m->pt_open_now, 1);
	}
	int id = in->backing_id;
	do_rec_sync(m, in);
	pthread_mutex_unlock(&m->ino_lock);
	return *pt ? id : -1;
}

void mows_pt_release(struct mows *m, struct mows_inode *in, struct cache_file *f, bool pt)
{
	pthread_mutex_lock(&m->ino_lock);
	if (!pt) {
		in->opens_plain--;
	} else {
		cache_file_passthrough_put(m->cache, f);
		atomic_fetch_sub(&m->pt_open_now, 1);
		if (--in->opens_pt == 0)
			do_backing_close(m, in);
	}
	do_rec_sync(m, in);
	pthread_mutex_unlock(&m->ino_lock);
}

void mows_pt_release_foreign(struct mows *m, struct mows_inode *in, bool pt)
{
	pthread_mutex_lock(&m->ino_lock);
	if (!pt && in->opens_plain) {
		in->opens_plain--;
	} else if (pt && in->opens_pt) {
		if (in->pins_foreign) {
			in->pins_foreign--;
			cache_file_passthrough_put(m->cache, in->file);
		}
		if (--in->opens_pt == 0)
			do_backing_close(m, in);
	}
	do_rec_sync(m, in);
	pthread_mutex_unlock(&m->ino_lock);
}

void mows_opens_adopt(struct mows *m, struct mows_inode *in)
{
	struct mows_open_rec *r = super_opens_rec(m->super, in->nodeid, false);
	if (!r || (!r->plain && !r->pt))
		return;
	in->rec = r;
	in->opens_plain = r->plain;
	in->opens_pt = r->pt;
	in->backing_id = r->pt ? r->backing_id : -1;
	in->pins_owed = r->pt;
}

/*
 * Passthrough readers of a previous process read the cache file straight from the kernel:
 * its chunks must not be evicted now either.
 */
void mows_pt_adopt_pins(struct mows *m, struct mows_inode *in)
{
	struct cache_file *f = mows_inode_version(m, in);
	pthread_mutex_lock(&m->ino_lock);
	uint32_t owed = in->pins_owed, pinned = 0;
	in->pins_owed = 0;
	for (; f && in->file == f && pinned < owed; pinned++) {
		int fd = cache_file_passthrough_get(m->cache, f);
		if (fd < 0)
			break;
		close(fd);
	}
	in->pins_foreign += pinned;
	pthread_mutex_unlock(&m->ino_lock);
	if (pinned < owed)
		log_warn("passthrough: %s: %u opens from before the restart read a cache file "
			 "this process could not pin (not complete here)", in->relpath,
			 owed - pinned);
	cache_file_put(m->cache, f);
}

static void adopt_one(void *arg, uint64_t nodeid)
{
	struct mows *m = arg;
	if (!mows_inode_get(m, nodeid))
		log_info("supervisor: node id %016llx, open before the restart, names no file "
			 "now: its requests get ESTALE", (unsigned long long)nodeid);
}

void mows_opens_adopt_all(struct mows *m)
{
	super_opens_foreach(m->super, adopt_one, m);
}

int mows_pt_reply_open(fuse_req_t req, uint64_t fh, int backing_id)
{
	struct pt_open_out out = { .fh = fh, .open_flags = PT_FOPEN_PASSTHROUGH,
				   .backing_id = backing_id };
	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}
