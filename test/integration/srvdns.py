"""A tiny authoritative DNS server for t_peers_srv: answers SRV, A and AAAA queries for the
names it is given, NXDOMAIN for the rest. Standard library only; one UDP socket; runs until
killed. Prints "ready" once bound.

  srvdns.py ADDR PORT SRVNAME TARGET:PORT... -- HOST=IPV4...
"""
import socket
import struct
import sys

QTYPE_A, QTYPE_AAAA, QTYPE_SRV = 1, 28, 33


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_question(msg):
    """Returns (name, qtype, end offset) of the first question."""
    pos, labels = 12, []
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1:pos + 1 + n].decode().lower())
        pos += 1 + n
    qtype, _ = struct.unpack(">HH", msg[pos + 1:pos + 5])
    return ".".join(labels), qtype, pos + 5


def rr(rtype, rdata):
    # Owner name: a pointer to the question's name at offset 12.
    return struct.pack(">HHHIH", 0xC00C, rtype, 1, 30, len(rdata)) + rdata


def answer(msg, srvname, targets, hosts):
    name, qtype, qend = read_question(msg)
    answers, rcode = [], 0
    if name == srvname and qtype == QTYPE_SRV:
        for prio, (target, port) in enumerate(targets):
            answers.append(rr(QTYPE_SRV, struct.pack(">HHH", 10 + prio, 50, port) +
                              encode_name(target)))
    elif name in hosts and qtype == QTYPE_A:
        answers.append(rr(QTYPE_A, socket.inet_aton(hosts[name])))
    elif name not in hosts and name != srvname:
        rcode = 3  # NXDOMAIN
    (qid,) = struct.unpack(">H", msg[:2])
    head = struct.pack(">HHHHHH", qid, 0x8400 | rcode, 1, len(answers), 0, 0)
    return head + msg[12:qend] + b"".join(answers)


def main():
    addr, port, srvname = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower()
    rest = sys.argv[4:]
    cut = rest.index("--")
    targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in rest[:cut]]
    hosts = dict(h.lower().split("=", 1) for h in rest[cut + 1:])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print("ready", flush=True)
    while True:
        msg, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(msg, srvname, targets, hosts), peer)
        except (IndexError, struct.error, UnicodeDecodeError):
            continue


if __name__ == "__main__":
    main()
