# mows: model weight service. Plain make; every dependency through pkg-config.
CC       ?= cc
PKGS     := fuse3 libisal inih libssl libcrypto libibverbs librdmacm
CFLAGS   ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wformat=2 -Wvla \
            -D_GNU_SOURCE -DFUSE_USE_VERSION=314 -I. -MMD -MP $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
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

.PHONY: all deps demo check unit fuzz integration bench bench-cluster bench-tls clean
all: $(BINS)

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

mows-tlsbench: tools/mows-tlsbench.o libmows.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test/bin/%: test/%.o libmows.a
	@mkdir -p test/bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check)

test/%.o: override CFLAGS += $(shell pkg-config --cflags check)

# Installs the Debian packages that building, demo and tests need, only when one is missing.
deps:
	@./tools/deps.sh

demo: deps all
	./tools/demo.sh

unit: $(CHECKS)
	@rc=0; for t in $(CHECKS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

integration: all
	./test/integration/run.sh

# libFuzzer on the peer frame parser; FUZZ_SECS=600 for a longer run.
FUZZ_SECS ?= 20
fuzz:
	./test/fuzz_proto.sh $(FUZZ_SECS)

check: deps
	$(MAKE) all $(CHECKS)
	$(MAKE) unit
	$(MAKE) fuzz
	$(MAKE) integration
	$(MAKE) check-rdma

bench: deps all
	./test/bench/run.sh

# Chunk throughput over loopback TCP with TLS on and off, CPU per GB, SHA-256 digest rate.
bench-tls: mows-tlsbench
	./mows-tlsbench

# 8 simulated nodes cold-starting at once, then a ninth joining (tools/mows-cluster).
bench-cluster: deps all
	./test/bench/cluster.sh

include test/rdma/rdma.mk

clean: clean-rdma
	rm -f $(BINS) libmows.a */*.o */*.d test/*.o test/*.d tools/*.o tools/*.d
	rm -rf test/bin

-include $(wildcard */*.d test/*.d)
