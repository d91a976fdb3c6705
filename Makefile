# mows: model weight service. Plain make; every dependency through pkg-config.
CC       ?= cc
PKGS     := fuse3 libisal inih libssl libcrypto libibverbs librdmacm
PKGS     += libmicrohttpd libsystemd
CFLAGS   ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wformat=2 -Wvla \
            -D_GNU_SOURCE -DFUSE_USE_VERSION=314 -I. -MMD -MP $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
LDLIBS   += -lresolv    # net/srv.c: SRV records for peer names (libc6-dev)
ifneq ($(CI),)
override CFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
override CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

LIB_SRCS := $(wildcard common/*.c cache/*.c net/*.c)
LIB_OBJS := $(LIB_SRCS:.c=.o)
FS_SRCS  := $(wildcard fs/*.c)
FS_OBJS  := $(FS_SRCS:.c=.o)
BINS     := mows-fuse mowsctl mows-crc32 mows-peerbench mows-tlsbench
CHECKS   := $(patsubst test/%.c,test/bin/%,$(wildcard test/check_*.c))

.PHONY: all deps demo check unit fuzz integration bench bench-cluster bench-fleet bench-tls sim sim-check clean
all: $(BINS) test/bin/faultfs

libmows.a: $(LIB_OBJS)
	$(AR) rcs $@ $^

mows-fuse: $(FS_OBJS) libmows.a
	$(CC) $(LDFLAGS) -o $@ $(FS_OBJS) libmows.a $(LDLIBS)

mowsctl: tools/mowsctl.o libmows.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

mows-crc32: tools/mows-crc32.o libmows.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

mows-peerbench: tools/mows-peerbench.o libmows.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Flow-level fleet model linking the real placement (tools/mows-sim.c, README "Fleet model").
mows-sim: tools/mows-sim.o libmows.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lm

mows-tlsbench: tools/mows-tlsbench.o libmows.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test/bin/%: test/%.o libmows.a
	@mkdir -p test/bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check)

test/%.o: override CFLAGS += $(shell pkg-config --cflags check)
# Kept: deleted as intermediates by the first build of a clean tree, they were all compiled
# again by the next make (make unit after make all), once their .d files named them.
.SECONDARY: $(CHECKS:test/bin/%=test/%.o)

# The supervisor's pure parts (backoff, table of opens, the environment it passes).
test/bin/check_supervisor: test/check_supervisor.o fs/supervisor.o fs/super_child.o fs/super_store.o libmows.a
	@mkdir -p test/bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check)

# mows_build_info{version=...} in the metrics.
fs/metrics.o: override CFLAGS += -DMOWS_VERSION='"$(or $(VERSION),$(shell git describe --always --dirty 2>/dev/null),unknown)"'

# A FUSE mirror that injects read faults, for the fault tests (test/integration/t_fault_*).
test/bin/faultfs: test/faultfs.c
	@mkdir -p test/bin
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(shell pkg-config --libs fuse3) -lpthread

# Installs the Debian packages that building, demo and tests need, only when one is missing.
deps:
	@./tools/deps.sh

demo: deps all
	./tools/demo.sh

unit: $(CHECKS)
	@rc=0; for t in $(CHECKS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

integration: all
	./test/integration/run.sh

# libFuzzer under ASan/UBSan on the peer frame parser, the control protocol, crc32.txt and
# the config file (test/fuzz.sh), FUZZ_SECS each; FUZZ_SECS=600 for a longer run.
FUZZ_SECS ?= 12
fuzz:
	./test/fuzz.sh $(FUZZ_SECS)

# Builds all the suites need (CHECK_JOBS at once), then test/check.sh runs unit, sim-check,
# fuzz and integration with the RDMA VM (check-rdma's) booted beside them at low priority.
CHECK_JOBS ?= 2
check: deps
	$(MAKE) -j$(CHECK_JOBS) all $(CHECKS) mows-sim test/bin/rdma_pair
	MAKE="$(MAKE)" ./test/check.sh

bench: deps all
	./test/bench/run.sh

# Chunk throughput over loopback TCP with TLS on and off, CPU per GB, SHA-256 digest rate.
bench-tls: mows-tlsbench
	./mows-tlsbench

# TLS on vs off through the daemon's chunk path (mows-peerbench against live mows-fuse
# daemons on loopback), CPU per GB at each end; MOWS_PTLS_TASKSET="0 1" gives each end a core.
.PHONY: bench-peer-tls
bench-peer-tls: mows-fuse mows-peerbench
	./test/bench/peer_tls.sh

# 8 simulated nodes cold-starting at once, then a ninth joining (tools/mows-cluster); then the
# fleet shapes: K nodes joining a warm cluster at once, 16 and 32 nodes cold at once.
bench-cluster: deps all
	./test/bench/cluster.sh
	./test/bench/fleet.sh

bench-fleet: deps all
	./test/bench/fleet.sh

# The fleet model: calibration against the cluster bench and predictions (README "Fleet model").
sim: mows-sim
	./mows-sim --table

# Known answers that a stub simulator would get wrong.
sim-check: mows-sim
	./test/sim_check.sh ./mows-sim

include test/rdma/rdma.mk

# ---- install and package ----
# make install [PREFIX=/usr/local] [DESTDIR=/staging]: programs, man pages, the systemd unit
# (its ExecStart pointed at BINDIR) and mows.conf.example. mows-peerbench is a benchmark for
# developers and is not installed.
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/mows
UNITDIR  ?= $(PREFIX)/lib/systemd/system
INSTALL_BINS := mows-fuse mowsctl mows-crc32
MANPAGES := $(wildcard man/*.[1-8])

.PHONY: install deb
install: $(INSTALL_BINS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(INSTALL_BINS) $(DESTDIR)$(BINDIR)/
	for p in $(MANPAGES); do \
		install -d $(DESTDIR)$(MANDIR)/man$${p##*.} && \
		install -m 0644 $$p $(DESTDIR)$(MANDIR)/man$${p##*.}/ || exit 1; \
	done
	sed 's|/usr/local/bin/|$(BINDIR)/|g' tools/mows-fuse@.service >$(DESTDIR)$(UNITDIR)/mows-fuse@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mows-fuse@.service
	install -m 0644 mows.conf.example $(DESTDIR)$(DOCDIR)/

# A .deb built with dpkg-deb from `make install` into a staging tree (packaging/deb/build.sh).
deb:
	./packaging/deb/build.sh

clean: clean-rdma
	rm -f $(BINS) libmows.a */*.o */*.d test/*.o test/*.d tools/*.o tools/*.d
	rm -rf test/bin build/deb
	rm -f mows-sim

-include $(wildcard */*.d test/*.d)
