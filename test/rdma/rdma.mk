# test/rdma/rdma.mk: the RDMA transport's build additions and its VM test.
# Included by the top Makefile (include test/rdma/rdma.mk); until then:
#   make -f Makefile -f test/rdma/rdma.mk check-rdma
#
#   make check-rdma   builds the daemon, the unit suite and test/bin/rdma_pair, runs the
#                     suite, then test/rdma/vm.sh: a qemu VM with soft-RoCE (rdma_rxe) that
#                     runs test/rdma/guest-test.sh. Needs root for apt-get the first time
#                     (qemu-system-x86, cpio, kernel .debs; cached in /var/cache/mows-rdma-vm).
#                     Exit 77 with "SKIP:" only when qemu cannot run here.

RDMA_LIBS := $(shell pkg-config --libs libibverbs librdmacm 2>/dev/null || echo -libverbs -lrdmacm)

# Whatever links net/rdma.o needs libibverbs and librdmacm. (Once they are in PKGS this
# only repeats them, which is harmless.)
mows-fuse mows-peerbench test/bin/check_rdma test/bin/rdma_pair: LDLIBS += $(RDMA_LIBS)

test/bin/rdma_pair: test/rdma/rdma_pair.o libmows.a
	@mkdir -p test/bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: check-rdma clean-rdma
check-rdma: mows-fuse mowsctl mows-peerbench test/bin/check_rdma test/bin/rdma_pair
	test/bin/check_rdma
	test/rdma/vm.sh

clean-rdma:
	rm -f test/rdma/*.o test/rdma/*.d

-include $(wildcard test/rdma/*.d)
