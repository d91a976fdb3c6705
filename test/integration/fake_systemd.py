#!/usr/bin/env python3
"""A stand-in for systemd's service manager, for one Type=notify service with
FileDescriptorStoreMax > 0 and Restart=on-failure: what t_supervisor_fdstore needs.

    fake_systemd.py STATEDIR -- COMMAND ARGS...

Runs COMMAND with NOTIFY_SOCKET set and keeps its file descriptor store as systemd does:
FDSTORE=1 with FDNAME=... adds (a name sent again replaces), FDSTOREREMOVE=1 removes,
and a descriptor that shows POLLHUP or POLLERR is dropped. The store's descriptors go to
every later start as LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID, from descriptor 3 on.

Driven through files in STATEDIR (every wait has a deadline):
  ready1, ready2    written when a start's READY=1 came (their text: the main pid)
  crash             when it appears: SIGKILL to the main process (the supervisor), then, as
                    systemd's KillMode=control-group does, SIGTERM to the processes left
                    (SIGKILL after 10 s); then a new start with the store (crashed written)
  stop              when it appears: SIGTERM to the main process, wait for it; stopped is
                    written with the names left in the store, and the manager exits
  store1            written once the store holds mows-fuse, mows-opens and mows-state
  log               the service's stdout and stderr
"""
import array, fcntl, json, os, select, signal, socket, sys, time

state, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
sock_path = os.path.join(state, "notify.sock")
store = {}     # name -> fd
main = None
starts = 0
deadline = time.time() + 240


def put(name, text):
    tmp = os.path.join(state, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(state, name))


def descendants(pid):
    kids, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == p:
                kids.append(int(d))
                frontier.append(int(d))
    return kids


def start():
    """Forks and execs the service with the store's descriptors at 3, 4, ..."""
    global main, starts
    names = sorted(store)
    fds = [store[n] for n in names]
    starts += 1
    log = os.open(os.path.join(state, "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            # First above every target, so that no dup2 below clobbers a source.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in fds]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i, inheritable=True)
            os.closerange(3 + len(fds), 65536)
            env = dict(os.environ)
            if fds:
                env.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)),
                           LISTEN_FDNAMES=":".join(names))
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    os.close(log)
    main = Proc(pid)


class Proc:
    def __init__(self, pid):
        self.pid, self.status = pid, None

    def poll(self):
        if self.status is None:
            p, st = os.waitpid(self.pid, os.WNOHANG)
            if p:
                self.status = st
        return self.status

    def wait(self, timeout):
        end = time.time() + timeout
        while self.poll() is None:
            if time.time() > end:
                raise TimeoutError("pid %d still running after %ss" % (self.pid, timeout))
            time.sleep(0.02)
        return self.status

    def kill(self, sig=signal.SIGKILL):
        if self.poll() is None:
            os.kill(self.pid, sig)


def receive(sock):
    data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
    fds = array.array("i")
    for level, kind, blob in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(blob[:len(blob) - (len(blob) % fds.itemsize)])
    fields = dict(l.split("=", 1) for l in data.decode(errors="replace").splitlines() if "=" in l)
    name = fields.get("FDNAME", "stored")
    if fields.get("FDSTORE") == "1":
        for fd in fds:
            if name in store:
                os.close(store[name])
            store[name] = fd
        fds = []
    if fields.get("FDSTOREREMOVE") == "1" and name in store:
        os.close(store.pop(name))
    for fd in fds:
        os.close(fd)
    if fields.get("READY") == "1" and main is not None:
        put("ready%d" % starts, str(main.pid))
    if {"mows-fuse", "mows-opens", "mows-state"} <= set(store) and starts == 1:
        put("store1", " ".join(sorted(store)))


def prune():
    for name in list(store):
        p = select.poll()
        p.register(store[name], 0)
        if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0)):
            os.close(store.pop(name))


def drain():
    """Like systemd: what the service sent before it exited counts before its exit."""
    while select.select([s], [], [], 0)[0]:
        receive(s)


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def crash():
    kids = descendants(main.pid)
    main.kill()
    main.wait(10)
    signal_all(kids, signal.SIGTERM)
    end = time.time() + 10
    while time.time() < end and any(os.path.exists("/proc/%d" % k) for k in kids):
        time.sleep(0.05)
    signal_all(kids, signal.SIGKILL)
    drain()
    prune()
    put("crashed", " ".join(sorted(store)))
    start()


def stop():
    main.kill(signal.SIGTERM)
    try:
        main.wait(30)
    except TimeoutError:
        main.kill()
        main.wait(10)
    drain()
    prune()
    put("stopped", json.dumps(sorted(store)))


def on_term(*_):
    if main is not None and main.poll() is None:
        signal_all(descendants(main.pid), signal.SIGKILL)
        main.kill()
    sys.exit(1)


signal.signal(signal.SIGTERM, on_term)
for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
    os.environ.pop(k, None)
os.environ["NOTIFY_SOCKET"] = sock_path
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
start()
crashed = False
while time.time() < deadline:
    if select.select([s], [], [], 0.05)[0]:
        receive(s)
    prune()
    if not crashed and os.path.exists(os.path.join(state, "crash")):
        crashed = True
        crash()
    if os.path.exists(os.path.join(state, "stop")):
        stop()
        sys.exit(0)
on_term()
