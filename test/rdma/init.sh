#!/bin/bash
# /init (PID 1) of the test VM that test/rdma/vm.sh boots. Mounts the kernel file systems,
# loads the modules listed in /etc/modules.load, runs /usr/bin/guest-test.sh under a
# watchdog with its output on the second serial port (a file on the host), writes
# MOWS_VM_RC=<status> there and powers the VM off. It must always reach the marker.
export PATH=/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
OUT=/dev/ttyS1
stty -F "$OUT" raw -echo 2>/dev/null

limit=540
args=
for word in $(cat /proc/cmdline); do
	case $word in
	mows.timeout=*) limit=${word#mows.timeout=} ;;
	mows.args=*) args=${word#mows.args=} ;;
	esac
done

halt_with() {
	echo "MOWS_VM_RC=$1" >"$OUT"
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 60
}

{
	echo "vm: kernel $(uname -r), /init at $(cut -d' ' -f1 /proc/uptime) s"
	while read -r ko; do
		insmod "$ko" || echo "vm: insmod $ko failed"
	done </etc/modules.load
	ip link set lo up
	# Pinning memory for RDMA needs it; root has CAP_IPC_LOCK anyway.
	ulimit -l unlimited
} >"$OUT" 2>&1

# shellcheck disable=SC2086 # args are words
timeout -s KILL "$limit" /bin/bash /usr/bin/guest-test.sh $args >"$OUT" 2>&1 </dev/null
rc=$?
if [ "$rc" -eq 137 ]; then
	{
		echo "vm: guest-test.sh killed by the ${limit} s watchdog; processes left:"
		ps
		echo "1 passed, 1 failed"
	} >"$OUT" 2>&1
fi
[ "$rc" -eq 0 ] || { echo "vm: last kernel messages:"; dmesg | tail -n 25; } >"$OUT" 2>&1
echo "vm: done at $(cut -d' ' -f1 /proc/uptime) s" >"$OUT"
halt_with "$rc"
