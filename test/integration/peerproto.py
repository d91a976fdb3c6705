#!/usr/bin/env python3
"""A small client of the mows peer wire protocol (net/proto.h, net/auth.h), for tests.

    peerproto.py selftest
    peerproto.py refused --addr HOST:PORT --secret-file F --root DIR --rel REL
    peerproto.py noauth  --addr HOST:PORT --root DIR --rel REL
    peerproto.py get     --addr HOST:PORT --secret-file F --root DIR --rel REL
                         [--chunk N] [--chunk-size B] [--expect-crc HEX] [--expect-from PATH]
    peerproto.py garbage --addr HOST:PORT [--conns N] [--mib M] [--seconds S]

refused: HELLO, then AUTH with a MAC made with a wrong secret (the right one with a byte
    changed); passes when the node answers AUTH_FAIL, closes, and a GET sent anyway gets no
    DATA. The node's own AUTH is checked against the right secret, so the client's MAC code is
    known to be right and the refusal is about the secret alone.
noauth: HELLO, then a GET instead of AUTH; passes when no DATA comes and the node closes.
get: the same handshake with the right secret; passes when the node answers AUTH_OK and a
    GET (with the FILL flag) of chunk N of DIR/REL gets DATA with status 0, the chunk's length
    and a CRC-32 that matches the bytes (and HEX, and the bytes of PATH at that offset, when
    given).
garbage: random bytes from /dev/urandom to the port over several connections, reconnecting
    whenever the node closes one, until M MiB were sent or S seconds passed; a third of the
    connections start with a MOWS header (random type and length), a third with a valid HELLO. Never fails
    because the node closed or reset a connection; fails only when none could be made.

DIR/REL is stat()ed for the file's identity (size and mtime), so run this where the node's
backing is mounted (in the node's namespaces: mows-cluster exec). Exit 0 pass, 1 fail, 2 usage.
Every step is printed, so a failing test shows how far the conversation got.
"""
import argparse
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading
import time
import zlib

MAGIC = 0x4D4F5753
VERSION = 1
HDR = struct.Struct(">IBBHII")           # magic, version, type, flags, len, req id
HELLO_FIXED = struct.Struct(">HH32sHB")  # version, caps, nonce, listen port, id length
GET = struct.Struct(">QQqQII")            # key, size, mtime_ns, chunk, chunk_size, flags
DATA_FIXED = struct.Struct(">iII")        # status, crc32, length
HELLO, AUTH, AUTH_OK, AUTH_FAIL, PING, PONG, GET_T, DATA = range(1, 9)
NAMES = {1: "HELLO", 2: "AUTH", 3: "AUTH_OK", 4: "AUTH_FAIL", 5: "PING", 6: "PONG", 7: "GET",
         8: "DATA", 9: "RDMA_DESC"}
GET_FILL = 1
AUTH_LABEL = b"mows-auth-v1"
MY_ID = "peerproto-test"
TIMEOUT = 5.0
M64 = (1 << 64) - 1


class Fail(Exception):
    pass


def say(msg):
    print("peerproto: " + msg, flush=True)


# ---- protocol pieces ----------------------------------------------------------------------

def file_key(relpath, size, mtime_ns):
    """proto_file_key(): FNV-1a-64 over relpath 0x00 be64(size) be64(mtime), then fmix64."""
    h = 0xCBF29CE484222325
    for b in relpath.encode() + b"\0" + struct.pack(">Qq", size, mtime_ns):
        h = ((h ^ b) * 0x100000001B3) & M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB93E1A85EC53) & M64
    h ^= h >> 33
    return h


def auth_mac(secret, role, their_nonce, my_nonce, my_id, their_id):
    """auth_mac() of net/auth.h: role is b"C" (connected) or b"S" (accepted)."""
    msg = (AUTH_LABEL + role + their_nonce + my_nonce + bytes([len(my_id)]) + my_id.encode()
           + bytes([len(their_id)]) + their_id.encode())
    return hmac.new(secret, msg, hashlib.sha256).digest()


def frame(ftype, payload=b"", req_id=0):
    return HDR.pack(MAGIC, VERSION, ftype, 0, len(payload), req_id) + payload


def hello_payload(nonce):
    return HELLO_FIXED.pack(VERSION, 0, nonce, 0, len(MY_ID)) + MY_ID.encode()


def recv_exact(sock, n):
    """n bytes, or fewer when the peer closed (b"" at once on EOF)."""
    buf = bytearray()
    while len(buf) < n:
        k = sock.recv(n - len(buf))
        if not k:
            break
        buf += k
    return bytes(buf)


def recv_frame(sock, what):
    """(type, req_id, payload); Fail if the node closes or times out first."""
    try:
        h = recv_exact(sock, HDR.size)
    except socket.timeout:
        raise Fail("no %s from the node within %.0f s" % (what, TIMEOUT))
    except ConnectionResetError:
        raise Fail("the node reset the connection while we waited for %s" % what)
    if len(h) < HDR.size:
        raise Fail("the node closed the connection while we waited for %s (%d header bytes)"
                   % (what, len(h)))
    magic, version, ftype, flags, length, req_id = HDR.unpack(h)
    if magic != MAGIC or version != VERSION or flags != 0:
        raise Fail("bad frame header from the node: magic %08x version %d flags %d"
                   % (magic, version, flags))
    if length > (64 << 20) + DATA_FIXED.size:
        raise Fail("frame of %d bytes from the node" % length)
    payload = recv_exact(sock, length)
    if len(payload) < length:
        raise Fail("the node closed the connection in the middle of a %s frame"
                   % NAMES.get(ftype, "?"))
    return ftype, req_id, payload


def parse_hello(payload):
    if len(payload) < HELLO_FIXED.size:
        raise Fail("HELLO of %d bytes" % len(payload))
    version, caps, nonce, port, idlen = HELLO_FIXED.unpack_from(payload)
    node_id = payload[HELLO_FIXED.size:HELLO_FIXED.size + idlen].decode("ascii", "replace")
    # an 8-byte uptime may follow the id
    if len(payload) not in (HELLO_FIXED.size + idlen, HELLO_FIXED.size + idlen + 8) or version < 1:
        raise Fail("malformed HELLO: version %d, id length %d, payload %d bytes"
                   % (version, idlen, len(payload)))
    return nonce, node_id, port


def connect(addr):
    host, _, port = addr.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def load_secret(path):
    with open(path, "rb") as f:
        s = f.read()
    if s.endswith(b"\n"):  # auth_load_secret() drops one trailing newline
        s = s[:-1]
    if not s:
        raise Fail("secret file %s is empty" % path)
    return s


def wrong_secret(secret):
    """The right secret with its last byte changed: same length, one byte off."""
    return secret[:-1] + bytes([secret[-1] ^ 0x01])


def get_request(args):
    path = os.path.join(args.root, args.rel)
    st = os.stat(path)
    key = file_key(args.rel, st.st_size, st.st_mtime_ns)
    if args.chunk * args.chunk_size >= st.st_size:
        raise Fail("chunk %d of %s (%d bytes) is past its end" % (args.chunk, path, st.st_size))
    say("GET %s chunk %d: key %016x size %d mtime_ns %d chunk_size %d"
        % (args.rel, args.chunk, key, st.st_size, st.st_mtime_ns, args.chunk_size))
    want_len = min(args.chunk_size, st.st_size - args.chunk * args.chunk_size)
    return GET.pack(key, st.st_size, st.st_mtime_ns, args.chunk, args.chunk_size, GET_FILL), \
        want_len


def handshake(sock, secret_for_mac, right_secret):
    """HELLO both ways, the node's AUTH checked with the right secret, ours sent with
    secret_for_mac. Returns (node_id, the frame type the node answered our AUTH with)."""
    nonce = os.urandom(32)
    sock.sendall(frame(HELLO, hello_payload(nonce)))
    ftype, _, payload = recv_frame(sock, "HELLO")
    if ftype != HELLO:
        raise Fail("expected HELLO first, got %s" % NAMES.get(ftype, ftype))
    their_nonce, their_id, port = parse_hello(payload)
    say("node's HELLO: node id %s, listen port %d" % (their_id, port))
    ftype, _, payload = recv_frame(sock, "the node's AUTH")
    if ftype != AUTH or len(payload) != 33:
        raise Fail("expected AUTH (33 bytes), got %s (%d bytes)"
                   % (NAMES.get(ftype, ftype), len(payload)))
    want = auth_mac(right_secret, b"S", nonce, their_nonce, their_id, MY_ID)
    if not hmac.compare_digest(payload[:32], want) or payload[32] != 0:
        raise Fail("the node's AUTH MAC does not check with the cluster secret (or it claims "
                   "insecure): this client's MAC code or the secret file is wrong")
    say("node's AUTH checks with the cluster secret")
    mac = auth_mac(secret_for_mac, b"C", their_nonce, nonce, MY_ID, their_id)
    sock.sendall(frame(AUTH, mac + b"\0"))
    ftype, _, payload = recv_frame(sock, "AUTH_OK or AUTH_FAIL")
    if ftype not in (AUTH_OK, AUTH_FAIL) or payload:
        raise Fail("expected AUTH_OK or AUTH_FAIL (empty), got %s (%d bytes)"
                   % (NAMES.get(ftype, ftype), len(payload)))
    say("node answered our AUTH with %s" % NAMES[ftype])
    return their_id, ftype


def expect_closed_without_data(sock, get_payload, what):
    """Sends a GET and reads until the node closes: no DATA may come, and it must close."""
    try:
        sock.sendall(frame(GET_T, get_payload, 7))
        say("sent a GET anyway")
    except (BrokenPipeError, ConnectionResetError):
        say("the GET could not even be sent: the node had closed the connection")
    end = time.monotonic() + TIMEOUT
    while True:
        sock.settimeout(max(0.1, end - time.monotonic()))
        try:
            h = recv_exact(sock, HDR.size)
        except ConnectionResetError:
            say("the node reset the connection (%s)" % what)
            return
        except socket.timeout:
            raise Fail("%s: the node kept the connection open for %.0f s" % (what, TIMEOUT))
        if not h:
            say("the node closed the connection (%s)" % what)
            return
        if len(h) == HDR.size and HDR.unpack(h)[2] == DATA:
            raise Fail("%s: the node answered the GET with DATA" % what)
        ftype = HDR.unpack(h)[2] if len(h) == HDR.size else None
        say("ignoring %d more bytes (%s)" % (len(h), NAMES.get(ftype, "partial header")))
        if len(h) == HDR.size:
            recv_exact(sock, HDR.unpack(h)[4])


# ---- commands -----------------------------------------------------------------------------

def cmd_selftest(_args):
    got = file_key("model/weights.bin", 1048576, 1700000000123456789)
    if got != 0x1ED7C03F21FAAE50:
        raise Fail("file_key known answer: got %016x, want 1ed7c03f21faae50" % got)
    say("file_key known answer ok")


def cmd_refused(args):
    right = load_secret(args.secret_file)
    get_payload, _ = get_request(args)
    with connect(args.addr) as sock:
        node, answer = handshake(sock, wrong_secret(right), right)
        if answer != AUTH_FAIL:
            raise Fail("node %s answered %s to a MAC made with a wrong secret"
                       % (node, NAMES[answer]))
        expect_closed_without_data(sock, get_payload, "after AUTH_FAIL")
    say("refused: pass")


def cmd_noauth(args):
    get_payload, _ = get_request(args)
    with connect(args.addr) as sock:
        sock.sendall(frame(HELLO, hello_payload(os.urandom(32))))
        ftype, _, payload = recv_frame(sock, "HELLO")
        if ftype != HELLO:
            raise Fail("expected HELLO first, got %s" % NAMES.get(ftype, ftype))
        say("node's HELLO: node id %s" % parse_hello(payload)[1])
        # The node's AUTH may come first; then our GET, in place of our AUTH.
        expect_closed_without_data(sock, get_payload, "GET without AUTH")
    say("noauth: pass")


def cmd_get(args):
    right = load_secret(args.secret_file)
    get_payload, want_len = get_request(args)
    with connect(args.addr) as sock:
        node, answer = handshake(sock, right, right)
        if answer != AUTH_OK:
            raise Fail("node %s answered %s to a MAC made with the cluster secret"
                       % (node, NAMES[answer]))
        sock.sendall(frame(AUTH_OK))
        sock.sendall(frame(GET_T, get_payload, 7))
        sock.settimeout(max(TIMEOUT, 15))
        ftype, req_id, payload = recv_frame(sock, "DATA")
        if ftype != DATA or req_id != 7:
            raise Fail("expected DATA for request 7, got %s for %d"
                       % (NAMES.get(ftype, ftype), req_id))
        status, crc, length = DATA_FIXED.unpack_from(payload)
        data = payload[DATA_FIXED.size:]
        say("DATA: status %d crc32 %08x length %d" % (status, crc, length))
        if status != 0:
            raise Fail("DATA status %d (%s)" % (status, os.strerror(status)))
        if length != want_len or len(data) != length:
            raise Fail("DATA length %d (%d bytes came), expected %d"
                       % (length, len(data), want_len))
        if zlib.crc32(data) != crc:
            raise Fail("DATA crc32 %08x, but its bytes have %08x" % (crc, zlib.crc32(data)))
        if args.expect_crc is not None and crc != int(args.expect_crc, 16):
            raise Fail("DATA crc32 %08x, expected %s" % (crc, args.expect_crc))
        if args.expect_from:
            with open(args.expect_from, "rb") as f:
                f.seek(args.chunk * args.chunk_size)
                want = f.read(want_len)
            if data != want:
                raise Fail("DATA bytes differ from %s at offset %d"
                           % (args.expect_from, args.chunk * args.chunk_size))
            say("DATA bytes equal %s" % args.expect_from)
    say("get: pass")


def cmd_garbage(args):
    total = args.mib << 20
    end = time.monotonic() + args.seconds
    lock = threading.Lock()
    stats = {"sent": 0, "conns": 0, "refused": 0, "closed": 0}

    def worker(share):
        with open("/dev/urandom", "rb") as rnd:
            sent = 0
            while sent < share and time.monotonic() < end:
                try:
                    sock = connect(args.addr)
                except OSError:
                    with lock:
                        stats["refused"] += 1
                    time.sleep(0.05)
                    continue
                with lock:
                    stats["conns"] += 1
                    kind = stats["conns"] % 3
                try:
                    # Some connections get past the first checks before the noise: a MOWS
                    # header with a random type and length, or a whole valid HELLO.
                    if kind == 1:
                        sock.sendall(struct.pack(">IB", MAGIC, VERSION) + rnd.read(11))
                    elif kind == 2:
                        sock.sendall(frame(HELLO, hello_payload(os.urandom(32))))
                    while sent < share and time.monotonic() < end:
                        buf = rnd.read(min(65536, share - sent))
                        sock.sendall(buf)
                        sent += len(buf)
                        with lock:
                            stats["sent"] += len(buf)
                except OSError:
                    with lock:
                        stats["closed"] += 1
                finally:
                    sock.close()

    threads = [threading.Thread(target=worker, args=(total // args.conns,))
               for _ in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say("garbage: %d bytes of /dev/urandom sent over %d connections (%d closed or reset by "
        "the node, %d connects failed)" % (stats["sent"], stats["conns"], stats["closed"],
                                           stats["refused"]))
    if stats["conns"] == 0:
        raise Fail("no connection to %s could be made" % args.addr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("selftest")
    for name in ("refused", "noauth", "get"):
        p = sub.add_parser(name)
        p.add_argument("--addr", required=True)
        if name != "noauth":
            p.add_argument("--secret-file", required=True)
        p.add_argument("--root", required=True)
        p.add_argument("--rel", required=True)
        p.add_argument("--chunk", type=int, default=0)
        p.add_argument("--chunk-size", type=int, default=1 << 20)
        if name == "get":
            p.add_argument("--expect-crc")
            p.add_argument("--expect-from")
    p = sub.add_parser("garbage")
    p.add_argument("--addr", required=True)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--mib", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    try:
        {"selftest": cmd_selftest, "refused": cmd_refused, "noauth": cmd_noauth,
         "get": cmd_get, "garbage": cmd_garbage}[args.cmd](args)
    except Fail as e:
        print("peerproto: FAIL: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    except OSError as e:
        print("peerproto: FAIL: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
