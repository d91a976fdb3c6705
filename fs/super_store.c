/* The supervisor's state in systemd's file descriptor store: see fs/super_priv.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/super_priv.h"

#define STATE_MAGIC "MOWSSUP1"

/* What the state memfd holds: the INIT to replay and the restart count. */
struct store_state {
	char magic[8];
	uint32_t init_len, init_pt, restarts, unused;
	uint8_t init[INIT_MAX];
};

static const char *const store_names[] = { "mows-fuse", "mows-opens", "mows-state" };

int super_store_new_state(void)
{
	return memfd_create("mows-state", MFD_CLOEXEC);
}

int super_store_write(int state_fd, const struct super_saved *sv)
{
	struct store_state st = { .init_len = (uint32_t)sv->init_len, .init_pt = sv->init_pt,
				  .restarts = sv->restarts };
	memcpy(st.magic, STATE_MAGIC, sizeof(st.magic));
	memcpy(st.init, sv->init, sv->init_len <= INIT_MAX ? sv->init_len : INIT_MAX);
	return pwrite(state_fd, &st, sizeof(st), 0) == (ssize_t)sizeof(st) ? 0 : -errno;
}

static int read_state(int fd, struct super_saved *sv)
{
	struct store_state st;
	if (pread(fd, &st, sizeof(st), 0) != (ssize_t)sizeof(st))
		return -EPROTO;
	if (memcmp(st.magic, STATE_MAGIC, sizeof(st.magic)) || st.init_len > INIT_MAX)
		return -EPROTO;
	memcpy(sv->init, st.init, st.init_len);
	sv->init_len = st.init_len;
	sv->init_pt = st.init_pt != 0;
	sv->restarts = st.restarts;
	return 0;
}

bool super_fuse_alive(int fd)
{
	struct pollfd p = { .fd = fd, .events = 0 };
	return !(poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLNVAL)));
}

static int name_index(const char *name)
{
	for (int i = 0; i < (int)(sizeof(store_names) / sizeof(store_names[0])); i++)
		if (!strcmp(name, store_names[i]))
			return i;
	return -1;
}

/* Takes the stored descriptors by name into @fds (-1 where absent); closes any other. */
static void take_fds(int n, char **names, int fds[3])
{
	fds[0] = fds[1] = fds[2] = -1;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i, k = name_index(names ? names[i] : "");
		if (k >= 0 && fds[k] < 0) {
			fcntl(fd, F_SETFD, FD_CLOEXEC);
			fds[k] = fd;
		} else {
			log_warn("supervisor: systemd passed descriptor %d named '%s', which is not "
				 "ours; closing it", fd, names && names[i] ? names[i] : "?");
			close(fd);
		}
	}
}

static void close_fds(int fds[3])
{
	for (int k = 0; k < 3; k++)
		if (fds[k] >= 0)
			close(fds[k]);
}

/* Undoes mountinfo's octal escapes (\040 for a space) of @s in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++, o++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o = *s;
		}
	}
	*o = '\0';
}

/*
 * Whether a FUSE file system is mounted at @mountpoint, from /proc/self/mountinfo: a
 * statfs() there would wait for a serving process, and there is none yet.
 */
static bool fuse_mounted_at(const char *mountpoint)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], point[PATH_MAX], type[64];
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f)) {
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    sscanf(dash + 3, "%63s", type) != 1)
			continue;
		unescape(point);
		found = !strcmp(point, mountpoint) && !strncmp(type, "fuse", 4);
	}
	if (f)
		fclose(f);
	return found;
}

/* Why the stored set cannot be adopted for @mountpoint, or NULL when it can. */
static const char *unusable(const int fds[3], const char *mountpoint, struct super_saved *sv)
{
	if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0)
		return "the set is incomplete";
	if (!super_fuse_alive(fds[0]))
		return "its FUSE connection has ended";
	if (!fuse_mounted_at(mountpoint))
		return "the mount point is no longer a FUSE mount";
	if (read_state(fds[2], sv))
		return "its state is not one this mows-fuse reads";
	return NULL;
}

int super_store_adopt(const char *mountpoint, struct super_saved *sv)
{
	char **names = NULL;
	int fds[3];
	int n = sd_listen_fds_with_names(1, &names);
	if (n <= 0) {
		free(names);
		return n < 0 ? n : 0;
	}
	take_fds(n, names, fds);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	const char *why = unusable(fds, mountpoint, sv);
	if (why) {
		log_warn("supervisor: systemd kept descriptors of an earlier mount of %s, but %s; "
			 "mounting afresh", mountpoint, why);
		close_fds(fds);
		super_store_forget();
		return 0;
	}
	sv->fuse_fd = fds[0];
	sv->opens_fd = fds[1];
	sv->state_fd = fds[2];
	return 1;
}

int super_store_push(const struct super_saved *sv)
{
	const int fds[3] = { sv->fuse_fd, sv->opens_fd, sv->state_fd };
	char msg[64];
	if (!getenv("NOTIFY_SOCKET"))
		return 0;
	for (int k = 0; k < 3; k++) {
		snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", store_names[k]);
		int rc = sd_pid_notify_with_fds(0, 0, msg, &fds[k], 1);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOTCONN;
	}
	return 1;
}

void super_store_forget(void)
{
	char msg[64];
	if (!getenv("NOTIFY_SOCKET"))
		return;
	for (int k = 0; k < 3; k++) {
		snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", store_names[k]);
		sd_pid_notify(0, 0, msg);
	}
}
