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

#define PT_OP_INIT 26
#define PT_INIT_EXT (1u << 30)
#define PT_FLAGS2_PASSTHROUGH (1u << 5)  /* FUSE_PASSTHROUGH = bit 37 of the 64-bit flags */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_STACK_DEPTH 1

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

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	struct mows *m = userdata;
	ssize_t n = read(fd, buf, len);
	if (n < (ssize_t)sizeof(struct pt_in_header))
		return n;
	const struct pt_in_header *h = buf;
	if (h->opcode != PT_OP_INIT)
		return n;
	struct pt_init_in in = { 0 };
	memcpy(&in, (char *)buf + sizeof(*h),
	       (size_t)n - sizeof(*h) < sizeof(in) ? (size_t)n - sizeof(*h) : sizeof(in));
	bool offered = (in.flags & PT_INIT_EXT) && (in.flags2 & PT_FLAGS2_PASSTHROUGH);
	if (!offered)
		log_warn("passthrough: the kernel did not offer it at INIT (protocol 7.%u; "
			 "CONFIG_FUSE_PASSTHROUGH?); files are served through the daemon",
			 in.minor);
	atomic_store(&m->init_unique, h->unique);
	atomic_store(&m->pt_offered, offered);
	return n;
}

/* libfuse's INIT reply, with passthrough asked for; -1 when it is not one to change. */
static ssize_t write_init(struct mows *m, int fd, const struct iovec *iov, int count)
{
	unsigned char buf[sizeof(struct pt_out_header) + sizeof(struct pt_init_out)];
	size_t len = 0;
	for (int k = 0; k < count; k++) {
		if (len + iov[k].iov_len > sizeof(buf))
			return -1;
		memcpy(buf + len, iov[k].iov_base, iov[k].iov_len);
		len += iov[k].iov_len;
	}
	struct pt_out_header *oh = (struct pt_out_header *)buf;
	if (oh->error || len != sizeof(buf))
		return -1;
	struct pt_init_out *out = (struct pt_init_out *)(buf + sizeof(*oh));
	out->flags |= PT_INIT_EXT;
	out->flags2 |= PT_FLAGS2_PASSTHROUGH;
	out->max_stack_depth = PT_STACK_DEPTH;
	ssize_t n = write(fd, buf, len);
	if (n == (ssize_t)len)
		atomic_store(&m->pt_negotiated, true);
	return n;
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct mows *m = userdata;
	if (count >= 1 && iov[0].iov_len >= sizeof(struct pt_out_header) &&
	    atomic_load(&m->pt_offered) && !atomic_load(&m->pt_negotiated)) {
		const struct pt_out_header *oh = iov[0].iov_base;
		if (oh->unique == atomic_load(&m->init_unique)) {
			ssize_t n = write_init(m, fd, iov, count);
			if (n >= 0)
				return n;
		}
	}
	return writev(fd, iov, count);
}

int mows_pt_mount(struct mows *m, const char *fsname)
{
	static const struct fuse_custom_io io = { .read = pt_read, .writev = pt_writev };
	char opts[256];
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
	if (fuse_session_custom_io(m->se, &io, fd) < 0) {
		umount2(m->mountpoint, MNT_DETACH);
		close(fd);
		return -1;
	}
	m->fuse_fd = fd;
	return 0;
}

void mows_pt_unmount(struct mows *m)
{
	if (m->fuse_fd < 0)
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
	pthread_mutex_unlock(&m->ino_lock);
}

int mows_pt_reply_open(fuse_req_t req, uint64_t fh, int backing_id)
{
	struct pt_open_out out = { .fh = fh, .open_flags = PT_FOPEN_PASSTHROUGH,
				   .backing_id = backing_id };
	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}
