/*
 * The authenticated inbound links' event loop: one thread waits on an epoll set holding
 * every link (EPOLLIN | EPOLLONESHOT), queues the readable ones, and a fixed pool of
 * readers reads their frames (serve_frame()). Threads do not grow with peers: 1 + SERVE_READERS
 * whatever the number of links. The loop thread also closes links idle too long.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"
#include "net/serve_priv.h"

#define SERVE_READERS 4
#define IO_TICK_MS 250       /* the loop's wait, so that stop and the idle sweep are seen */
#define IO_SWEEP_MS 1000
#define IO_BURST 16          /* frames read from one link before it yields to the others */
#define IO_EVENTS 64

struct serve_io {
	struct peers *p;
	int epfd;
	pthread_t loop;
	pthread_t readers[SERVE_READERS];
	unsigned nreaders;
	bool loop_started;
	uint64_t next_sweep_ns;         /* the loop thread's own */
	pthread_mutex_t lock;
	pthread_cond_t cond;            /* a link is ready, or quit */
	pthread_cond_t empty;           /* the last link ended */
	struct sconn *links;            /* every registered link, protected by lock */
	unsigned nlinks;                /* protected by lock */
	struct sconn *ready, **ready_tail; /* links for the readers, protected by lock */
	bool stopping;                  /* links end instead of being read, protected by lock */
	bool quit;                      /* the threads end, protected by lock */
};

/*
 * How long a link may stay silent: PEER_IDLE_MS, or longer when a heartbeat link gets a
 * PING less often (each round pings members_ping_budget() of the members).
 */
static uint32_t idle_limit_ms(struct peers *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t n = p->members.n + 1;
	pthread_mutex_unlock(&p->lock);
	uint64_t budget = members_ping_budget((unsigned)n);
	uint64_t rounds = (n + budget - 1) / budget;
	uint64_t ms = 3 * rounds * p->cfg->heartbeat_ms;
	return ms > PEER_IDLE_MS ? (ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms) : PEER_IDLE_MS;
}

/* Lock held. Queues @sc (whose token the caller holds) for a reader. */
static void do_push(struct serve_io *io, struct sconn *sc)
{
	sc->ready_next = NULL;
	*io->ready_tail = sc;
	io->ready_tail = &sc->ready_next;
	pthread_cond_signal(&io->cond);
}

static void io_push(struct serve_io *io, struct sconn *sc)
{
	pthread_mutex_lock(&io->lock);
	do_push(io, sc);
	pthread_mutex_unlock(&io->lock);
}

/* Hands @sc back: to the epoll set, or straight to a reader when TLS holds bytes the socket
 * no longer shows. */
static void io_arm(struct serve_io *io, struct sconn *sc)
{
	if (link_buffered(sc->link)) {
		io_push(io, sc);
		return;
	}
	pthread_mutex_lock(&sc->lock);
	sc->armed = true;
	sc->armed_ns = mono_ns();
	pthread_mutex_unlock(&sc->lock);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = sc };
	int fd = link_poll_fd(sc->link);
	/* A link whose handshake left TLS bytes buffered went to a reader before it was ever in
	 * the set (serve_io_add()): the first arm adds it. */
	if (epoll_ctl(io->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ||
	    (errno == ENOENT && epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev) == 0))
		return;
	log_warn("peer %s: cannot watch its connection: %s; closing it", sc->node_id,
		 strerror(errno));
	pthread_mutex_lock(&sc->lock);
	sc->armed = false;
	pthread_mutex_unlock(&sc->lock);
	link_shutdown(sc->link);
	io_push(io, sc);
}

void serve_io_arm(struct peers *p, struct sconn *sc)
{
	io_arm(p->io, sc);
}

/* The token holder ends @sc: out of the epoll set and the list, then its reference. */
static void io_end(struct serve_io *io, struct sconn *sc, int rc)
{
	pthread_mutex_lock(&sc->lock);
	bool idle = sc->idle;
	sc->closed = true;
	pthread_mutex_unlock(&sc->lock);
	if (idle)
		log_debug("peer %s: connection idle; closing it", sc->node_id);
	else if (rc < 0 && rc != -ECONNRESET && rc != -ESHUTDOWN)
		log_debug("peer connection closed: %s", strerror(-rc));
	epoll_ctl(io->epfd, EPOLL_CTL_DEL, link_poll_fd(sc->link), NULL);
	pthread_mutex_lock(&io->lock);
	if (sc->io_prev)
		sc->io_prev->io_next = sc->io_next;
	else
		io->links = sc->io_next;
	if (sc->io_next)
		sc->io_next->io_prev = sc->io_prev;
	if (--io->nlinks == 0)
		pthread_cond_broadcast(&io->empty);
	pthread_mutex_unlock(&io->lock);
	sconn_end(sc);
}

/*
 * A reader holds @sc: reads the frames that are there (at most IO_BURST, draining what TLS
 * holds), then arms it again. At the inflight cap it is left stalled: the job that ends
 * arms it, so a busy peer never holds a reader.
 */
static void io_serve(struct serve_io *io, struct sconn *sc, bool stopping)
{
	int rc = stopping ? -ESHUTDOWN : 0;
	for (unsigned n = 0; rc == 0 && n < IO_BURST; n++) {
		if (n > 0 && !link_readable_now(sc->link))
			break;
		pthread_mutex_lock(&sc->lock);
		bool full = sc->inflight >= SERVE_CONN_INFLIGHT;
		sc->stalled = full;
		pthread_mutex_unlock(&sc->lock);
		if (full)
			return;
		rc = serve_frame(io->p, sc);
	}
	if (rc == 0)
		io_arm(io, sc);
	else
		io_end(io, sc, rc);
}

static void *reader_main(void *arg)
{
	struct serve_io *io = arg;
	pthread_mutex_lock(&io->lock);
	for (;;) {
		struct sconn *sc = io->ready;
		if (!sc && io->quit)
			break;
		if (!sc) {
			pthread_cond_wait(&io->cond, &io->lock);
			continue;
		}
		io->ready = sc->ready_next;
		if (!io->ready)
			io->ready_tail = &io->ready;
		bool stopping = io->stopping;
		pthread_mutex_unlock(&io->lock);
		io_serve(io, sc, stopping);
		pthread_mutex_lock(&io->lock);
	}
	pthread_mutex_unlock(&io->lock);
	return NULL;
}

/* Shuts down the armed links silent past the idle limit; their reader then ends them. */
static void io_sweep(struct serve_io *io)
{
	uint64_t now = mono_ns();
	if (now < io->next_sweep_ns)
		return;
	io->next_sweep_ns = now + (uint64_t)IO_SWEEP_MS * 1000000;
	uint64_t idle_ns = (uint64_t)idle_limit_ms(io->p) * 1000000;
	pthread_mutex_lock(&io->lock);
	for (struct sconn *sc = io->links; sc; sc = sc->io_next) {
		pthread_mutex_lock(&sc->lock);
		/* A link armed after @now was taken is not idle (unsigned: now - armed_ns would
		 * wrap and shut down a busy link in the middle of its answers). */
		if (sc->armed && !sc->idle && now > sc->armed_ns && now - sc->armed_ns >= idle_ns) {
			sc->idle = true;
			link_shutdown(sc->link); /* readable at once: a reader ends it */
		}
		pthread_mutex_unlock(&sc->lock);
	}
	pthread_mutex_unlock(&io->lock);
}

static void *loop_main(void *arg)
{
	struct serve_io *io = arg;
	struct epoll_event ev[IO_EVENTS];
	bool warned = false;
	for (;;) {
		int n = epoll_wait(io->epfd, ev, IO_EVENTS, IO_TICK_MS);
		if (n < 0 && errno != EINTR && !warned) {
			warned = true;
			log_err("peers: waiting for inbound requests: %s", strerror(errno));
		}
		if (n < 0)
			usleep(IO_TICK_MS * 1000);
		for (int i = 0; i < n; i++) {
			struct sconn *sc = ev[i].data.ptr;
			pthread_mutex_lock(&sc->lock);
			sc->armed = false;
			pthread_mutex_unlock(&sc->lock);
			io_push(io, sc);
		}
		io_sweep(io);
		pthread_mutex_lock(&io->lock);
		bool quit = io->quit;
		pthread_mutex_unlock(&io->lock);
		if (quit)
			break;
	}
	return NULL;
}

int serve_io_add(struct peers *p, struct sconn *sc)
{
	struct serve_io *io = p->io;
	pthread_mutex_lock(&io->lock);
	if (io->stopping) {
		pthread_mutex_unlock(&io->lock);
		return -ESHUTDOWN;
	}
	sc->io_prev = NULL;
	sc->io_next = io->links;
	if (io->links)
		io->links->io_prev = sc;
	io->links = sc;
	io->nlinks++;
	pthread_mutex_lock(&sc->lock);
	sc->armed = true;
	sc->armed_ns = mono_ns();
	pthread_mutex_unlock(&sc->lock);
	/* Under io->lock: an event for it must find it in the list, and stop must see it. */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = sc };
	int rc = 0;
	if (link_buffered(sc->link)) {
		pthread_mutex_lock(&sc->lock);
		sc->armed = false;
		pthread_mutex_unlock(&sc->lock);
		do_push(io, sc);
	} else if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, link_poll_fd(sc->link), &ev)) {
		rc = -errno;
		io->links = sc->io_next;
		if (io->links)
			io->links->io_prev = NULL;
		io->nlinks--;
	}
	pthread_mutex_unlock(&io->lock);
	return rc;
}

static void io_free(struct serve_io *io)
{
	if (io->epfd >= 0)
		close(io->epfd);
	pthread_mutex_destroy(&io->lock);
	pthread_cond_destroy(&io->cond);
	pthread_cond_destroy(&io->empty);
	free(io);
}

/* Ends the threads started so far. */
static void io_quit(struct serve_io *io)
{
	pthread_mutex_lock(&io->lock);
	io->quit = true;
	pthread_cond_broadcast(&io->cond);
	pthread_mutex_unlock(&io->lock);
	if (io->loop_started)
		pthread_join(io->loop, NULL);
	for (unsigned i = 0; i < io->nreaders; i++)
		pthread_join(io->readers[i], NULL);
}

int serve_io_start(struct peers *p)
{
	struct serve_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->p = p;
	io->ready_tail = &io->ready;
	pthread_mutex_init(&io->lock, NULL);
	pthread_cond_init(&io->cond, NULL);
	pthread_cond_init(&io->empty, NULL);
	io->epfd = epoll_create1(EPOLL_CLOEXEC);
	int rc = io->epfd < 0 ? -errno : 0;
	for (; rc == 0 && io->nreaders < SERVE_READERS; io->nreaders += rc == 0)
		rc = -pthread_create(&io->readers[io->nreaders], NULL, reader_main, io);
	if (rc == 0 && (rc = -pthread_create(&io->loop, NULL, loop_main, io)) == 0)
		io->loop_started = true;
	if (rc) {
		io_quit(io);
		io_free(io);
		return rc;
	}
	p->io = io;
	return 0;
}

void serve_io_stop(struct peers *p)
{
	struct serve_io *io = p->io;
	if (!io)
		return;
	pthread_mutex_lock(&io->lock);
	io->stopping = true;
	for (struct sconn *sc = io->links; sc; sc = sc->io_next) {
		link_shutdown(sc->link); /* armed ones turn readable; a reader ends them */
		pthread_mutex_lock(&sc->lock);
		bool stalled = sc->stalled;
		sc->stalled = false;
		pthread_mutex_unlock(&sc->lock);
		if (stalled)
			do_push(io, sc);
	}
	pthread_cond_broadcast(&io->cond);
	while (io->nlinks)
		pthread_cond_wait(&io->empty, &io->lock);
	pthread_mutex_unlock(&io->lock);
	io_quit(io);
	io_free(io);
	p->io = NULL;
}
