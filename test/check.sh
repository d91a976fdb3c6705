#!/bin/sh
# The suites of `make check`, once everything is built (the Makefile's check target builds
# first). The RDMA VM (test/rdma/vm.sh: about five minutes of emulated CPU under TCG) boots
# in the background at nice MOWS_CHECK_VM_NICE (19), in its own session, while the unit
# suites, sim-check, fuzz and the integration tests run in the foreground: those mostly wait
# on sleeps, sockets and timers, so the VM uses the idle CPU and the timing of the host tests
# is not disturbed (nice 19 gets about 1/70 of a core that nice 0 wants). Its output is
# printed after theirs. MOWS_CHECK_VM=fg runs it after the others instead, as before.
# Exit status: 0 when every part passed, 1 otherwise (each part's own summary says which).
set -u
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
vm_mode=${MOWS_CHECK_VM:-bg}
case $vm_mode in
bg | fg) ;;
*) echo "check: MOWS_CHECK_VM '$vm_mode': expected bg or fg" >&2; exit 2 ;;
esac

vm_log=
vm_pid=
stop_vm() {
	[ -n "$vm_pid" ] && kill -TERM "$vm_pid" 2>/dev/null && wait "$vm_pid" 2>/dev/null
	[ -n "$vm_log" ] && rm -f "$vm_log"
}
trap 'stop_vm; exit 130' INT TERM HUP

if [ "$vm_mode" = bg ]; then
	vm_log=$(mktemp /tmp/mows-check-vm.XXXXXX) || exit 2
	# Emulated CPU runs slower beside the other suites: a longer limit, unless one was set.
	# Its own session, and that session's autogroup at the same nice: with autogroups (the
	# kernel's default) nice only ranks processes within a group, and the cluster tests'
	# daemons each run in a session of their own, so a merely niced qemu would take a full
	# share from each of them.
	MOWS_RDMA_VM_TIMEOUT=${MOWS_RDMA_VM_TIMEOUT:-900} VM_NICE=${MOWS_CHECK_VM_NICE:-19} \
		setsid sh -c '[ -w /proc/self/autogroup ] && echo "$VM_NICE" >/proc/self/autogroup
		exec nice -n "$VM_NICE" test/rdma/vm.sh run' >"$vm_log" 2>&1 </dev/null &
	vm_pid=$!
	echo "check: the RDMA VM boots in the background (pid $vm_pid); its output follows the integration tests"
fi

rc=0
for part in unit sim-check fuzz integration; do
	echo "check: make $part"
	$MAKE --no-print-directory "$part" || { rc=1; echo "check: make $part FAILED"; }
done

echo "check: the RDMA VM (test/rdma/vm.sh)"
if [ "$vm_mode" = bg ]; then
	t0=$(date +%s)
	wait "$vm_pid"
	vm_rc=$?
	vm_pid=
	cat "$vm_log"
	rm -f "$vm_log"
	vm_log=
	echo "check: waited $(($(date +%s) - t0)) s for the RDMA VM after the other suites"
else
	test/rdma/vm.sh run
	vm_rc=$?
fi
[ "$vm_rc" -eq 0 ] || { rc=1; echo "check: the RDMA VM FAILED (exit $vm_rc)"; }
exit $rc
