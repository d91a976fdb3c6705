/*
 * systemd integration (Type=notify): readiness, status and watchdog, through libsystemd.
 *
 * When systemd started us (NOTIFY_SOCKET is set) a thread probes the mount with statfs(),
 * a request the kernel always passes to the FUSE loop (it is never answered from a kernel
 * cache), and checks that the answer came from a FUSE file system. The first probe that
 * succeeds proves the kernel has our INIT reply and the loop answers requests: only then is
 * READY=1 sent, so `systemctl start` returns when the mount serves. With WatchdogSec set,
 * WATCHDOG=1 is sent after every successful probe (every half watchdog interval), so a hung
 * FUSE loop stops the pings and systemd restarts the service; a probe that fails sends
 * nothing. STATUS= carries a one-line summary (cache use, hit ratio, bytes read).
 *
 * Threads: notify_start() and notify_stop() from the main thread; the probe thread is the
 * notify module's own. notify_stop() must come after the FUSE session is unmounted, which
 * ends a probe stuck in a dead mount.
 */
#ifndef MOWS_FS_NOTIFY_H
#define MOWS_FS_NOTIFY_H

struct mows;

/* Starts the probe thread when systemd asks for notifications (else does nothing and
 * returns 0). Sets m->notify. Returns 0 or -errno. */
int notify_start(struct mows *m);

/* Sends STOPPING=1, stops the probe thread and frees it. Safe when none was started. */
void notify_stop(struct mows *m);

#endif
