#!/usr/bin/env python3
"""The "hostile mix" scenario of `make bench` (issue 8): the server under abusive clients.

Acceptance criterion measured here: with 5,000 slowloris connections, 8 trickling uploads
(Content-Length, chunked and `Expect: 100-continue` bodies), 2 pipelining clients that never
read and a stream of `HTTP/2.0` request lines all running at once, `/health` p99 stays under
50 ms and a normal login still succeeds; after they stop, the server's thread and descriptor
counts return to baseline. On the way in, 5,000 idle connections must stay under 100 MiB RSS.

Two processes, so that the attackers do not distort what is measured:

- this module's `measure()`, called by bench/run.py in the benchmark process, holds the
  server, reads its counts from /proc, probes `/health` and logs in;
- the attackers run in a child process (`python3 bench/hostile.py attack SETTINGS_JSON`), all
  in one thread on non-blocking sockets and `selectors`. A thread of its own in the benchmark
  process would hold the GIL while the prober waits for its answer and add milliseconds to
  every probe; 5,000 threads would measure Python rather than the server.

The two talk over the child's stdin (commands: `attack`, `stop`) and stdout (one JSON event
per line). Everything connects to 127.0.0.1 only, and every loop ends by count or deadline.
"""

import collections
import errno
import heapq
import json
import os
import queue
import random
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

IDLE_CONNECTIONS = 5000
TRICKLES = 8                 # uploads, kinds taken in turn from TRICKLE_KINDS
PIPELINERS = 2
H2_RATE = 200                # new `HTTP/2.0` connections per second, at most
H2_IN_FLIGHT = 16            # …and at most this many waiting for their answer at once
SLOWLORIS_EVERY = 3.0        # seconds between the header lines of a slowloris connection
TRICKLE_EVERY = 1.0          # seconds between the body bytes of an upload
# New connections, idle ones and reconnects alike, are paced. A burst faster than the server
# accepts overflows its listen queue (4,096, capped at net.core.somaxconn; it was std's 128 when
# this was written, and 5,000 at once overflowed it): the kernel then answers with SYN cookies
# and leaves connections the client believes open and the server never saw, which would make
# the idle-memory figure wrong. 2,000/s stays well inside it here.
CONNECTS_PER_SECOND = 2000
CONNECT_BURST = 64
CONNECTING_AT_ONCE = 64      # connects in progress at once
PROBE_EVERY = 0.010          # seconds between the starts of two /health probes
PROBE_TIMEOUT = 5.0
BACK_TO_BASELINE_WAIT = 30.0
BASELINE_SLACK = 2           # threads or descriptors above baseline still counted as back

TRICKLE_KINDS = ("length", "chunked", "continue")
H2_REQUESTS = (b"GET / HTTP/2.0\r\nHost: bench\r\n\r\n",
               b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the HTTP/2 connection preface
PIPELINED = b"GET /openapi.json HTTP/1.1\r\nHost: bench\r\n\r\n"
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
TCP_ESTABLISHED = 1          # tcpi_state, the first byte of struct tcp_info


def raise_fd_limit():
    """Raises this process's soft open-file limit to its hard limit (5,000 sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------------------------
# The attackers (child process)
# ---------------------------------------------------------------------------------------------

class Conn:
    """One attacking connection. Single use: a reconnect is a new Conn of the same kind."""

    def __init__(self, kind, sock):
        self.kind = kind          # "slowloris", "trickle", "pipeline" or "h2"
        self.sock = sock
        self.connected = False
        self.closed = False
        self.inbox = b""          # what the server sent, kept only to find status lines in
        self.statuses = []
        self.born = time.monotonic()
        self.variant = None       # trickle: one of TRICKLE_KINDS; h2: the request sent
        self.body = b""           # trickle: what is left to send
        self.continued = False    # trickle "continue": 100 Continue received (or gave up)


class Attackers:
    """Every attacking connection, driven by one selector loop and a heap of timers."""

    def __init__(self, port, idle, body, pipeline_depth, deadline):
        self.address = ("127.0.0.1", port)
        self.idle = idle
        self.body = body              # a valid login body, trickled byte by byte
        self.pipeline_depth = pipeline_depth
        self.deadline = deadline      # hard stop, in case the benchmark process vanished
        self.selector = selectors.DefaultSelector()
        self.timers = []              # heap of (when, seq, conn, callback)
        self.seq = 0
        self.to_open = collections.deque()
        self.connecting = 0
        self.connect_budget, self.budget_at = 0.0, time.monotonic()
        self.conns = set()
        self.open = collections.Counter()      # connected, per kind
        self.attacking = False
        self.stopping = False
        self.h2_started = 0
        self.h2_waiting = 0
        self.attack_started = None
        self.stats = {
            "connect_errors": 0,
            "slowloris": {"reconnects": 0, "statuses": collections.Counter(), "closed_unanswered": 0,
                          "resets": 0, "open_min": None, "open_max": 0},
            "trickle": {kind: {"connections": 0, "statuses": collections.Counter(),
                               "closed_unanswered": 0, "bodies_completed": 0}
                        for kind in TRICKLE_KINDS},
            "pipeline": {"connections": 0, "dropped_after_s": []},
            "h2": {"sent": 0, "statuses": collections.Counter(), "unanswered": 0,
                   "in_flight_at_stop": 0},
        }

    # -- plumbing ---------------------------------------------------------------------------

    def emit(self, event, **fields):
        print(json.dumps({"event": event, **fields}), flush=True)

    def later(self, delay, conn, callback):
        self.seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.seq, conn, callback))

    def start(self, kind, variant=None):
        """Queues a new connection; `pump()` opens it at the paced rate."""
        self.to_open.append((kind, variant))

    def pump(self):
        """Opens queued connections, at most CONNECTS_PER_SECOND and CONNECTING_AT_ONCE."""
        now = time.monotonic()
        self.connect_budget = min(CONNECT_BURST,
                                  self.connect_budget + (now - self.budget_at) * CONNECTS_PER_SECOND)
        self.budget_at = now
        while (self.to_open and self.connecting < CONNECTING_AT_ONCE and self.connect_budget >= 1
               and not self.stopping):
            self.connect_budget -= 1
            kind, variant = self.to_open.popleft()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            if kind == "pipeline":
                # A small receive window, so the server's answers back up into its own send
                # buffer and its write blocks: that is what WRITE_TIMEOUT must end.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn = Conn(kind, sock)
            conn.variant = variant
            err = sock.connect_ex(self.address)
            if err not in (0, errno.EINPROGRESS):
                self.stats["connect_errors"] += 1
                sock.close()
                # Retry later, not at once: a refusing server must not turn this into a spin.
                self.later(0.2, None, lambda _c, k=kind, v=variant: self.start(k, v))
                continue
            self.connecting += 1
            self.conns.add(conn)
            self.selector.register(sock, selectors.EVENT_WRITE, conn)

    def close(self, conn, reconnect=True):
        if conn.closed:
            return
        conn.closed = True
        if conn.connected:
            self.open[conn.kind] -= 1
        else:
            self.connecting -= 1
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass  # pipeline connections are not registered once connected
        conn.sock.close()
        self.conns.discard(conn)
        if conn.kind == "h2":
            self.h2_waiting -= 1
        elif reconnect and not self.stopping:
            if conn.kind == "slowloris":
                self.stats["slowloris"]["reconnects"] += 1
            self.start(conn.kind, conn.variant)

    def send(self, conn, data):
        """Sends without blocking; a connection found closed or reset is closed (and so
        reconnected)."""
        if conn.closed:
            return False
        try:
            conn.sock.send(data)
            return True
        except BlockingIOError:
            return True  # a full send buffer: this byte is skipped, the attack goes on
        except OSError:
            self.close(conn)
            return False

    # -- events -----------------------------------------------------------------------------

    def on_writable(self, conn):
        """A connect finished, or failed."""
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.stats["connect_errors"] += 1
            self.close(conn)
            return
        conn.connected = True
        self.connecting -= 1
        self.open[conn.kind] += 1
        if conn.kind == "pipeline":
            # Never read: take it out of the selector and watch its TCP state instead.
            self.selector.unregister(conn.sock)
            self.stats["pipeline"]["connections"] += 1
            self.send(conn, PIPELINED * self.pipeline_depth)
            self.later(1.0, conn, self.pipeline_check)
            return
        self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.kind == "slowloris":
            if self.attacking:
                self.slowloris_head(conn)
        elif conn.kind == "trickle":
            self.trickle_head(conn)
        elif conn.kind == "h2":
            self.stats["h2"]["sent"] += 1
            self.send(conn, conn.variant)
            self.later(PROBE_TIMEOUT, conn, self.h2_timeout)

    def on_readable(self, conn):
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = None
        if data:
            if len(conn.inbox) < 16384:  # a few small answers at most; no more is needed
                conn.inbox += data
            found = [int(s) for s in STATUS.findall(conn.inbox)]
            new, conn.statuses = found[len(conn.statuses):], found
            if conn.kind == "trickle" and 100 in new and not conn.continued:
                conn.continued = True
                self.later(TRICKLE_EVERY, conn, self.trickle_byte)
            if any(s >= 200 for s in new):
                # A final answer to a request that was never finished: the server is done
                # with this connection, so is the attacker; reconnect at once.
                self.finish(conn)
            return
        # End of stream (or reset) with no final answer.
        if conn.kind == "h2":
            self.stats["h2"]["unanswered"] += 1
        elif conn.kind == "slowloris":
            self.stats["slowloris"]["closed_unanswered" if data is not None else "resets"] += 1
        elif conn.kind == "trickle":
            self.stats["trickle"][conn.variant]["closed_unanswered"] += 1
        self.close(conn)

    def finish(self, conn):
        """Counts the statuses a connection received, then closes it."""
        if conn.kind == "h2":
            self.stats["h2"]["statuses"].update(conn.statuses)
        elif conn.kind == "slowloris":
            self.stats["slowloris"]["statuses"].update(conn.statuses)
        elif conn.kind == "trickle":
            self.stats["trickle"][conn.variant]["statuses"].update(conn.statuses)
        self.close(conn)

    # -- the kinds of attack ----------------------------------------------------------------

    def slowloris_head(self, conn):
        """Starts a request head that is never finished, then adds a line every few seconds."""
        if self.send(conn, b"GET /health HTTP/1.1\r\nHost: bench\r\n"):
            self.later(SLOWLORIS_EVERY, conn, self.slowloris_line)

    def slowloris_line(self, conn):
        if self.send(conn, b"X-Slow: %d\r\n" % random.randrange(10**6)):
            self.later(SLOWLORIS_EVERY, conn, self.slowloris_line)

    def trickle_head(self, conn):
        """Sends an upload's head at once; its body then comes one byte per TRICKLE_EVERY."""
        self.stats["trickle"][conn.variant]["connections"] += 1
        head = b"POST /auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        if conn.variant == "chunked":
            head += b"Transfer-Encoding: chunked\r\n\r\n"
        else:
            head += b"Content-Length: %d\r\n" % len(self.body)
            if conn.variant == "continue":
                head += b"Expect: 100-continue\r\n"
            head += b"\r\n"
        conn.body = self.body
        if not self.send(conn, head):
            return
        if conn.variant == "continue":
            # Like curl: send the body after 100 Continue, or after a second without it.
            self.later(1.0, conn, self.trickle_give_up_waiting)
        else:
            self.later(random.uniform(0, TRICKLE_EVERY), conn, self.trickle_byte)

    def trickle_give_up_waiting(self, conn):
        if not conn.continued:
            conn.continued = True
            self.trickle_byte(conn)

    def trickle_byte(self, conn):
        if not conn.body:
            return
        byte, conn.body = conn.body[:1], conn.body[1:]
        piece = b"1\r\n" + byte + b"\r\n" if conn.variant == "chunked" else byte
        if not conn.body:
            # Never reached at the defaults (BODY_TIMEOUT ends the upload first); if it is,
            # the server answers the login and the connection is replaced on that answer.
            self.stats["trickle"][conn.variant]["bodies_completed"] += 1
            if conn.variant == "chunked":
                piece += b"0\r\n\r\n"
        if self.send(conn, piece) and conn.body:
            self.later(TRICKLE_EVERY, conn, self.trickle_byte)

    def pipeline_check(self, conn):
        """Pipelines one more request; replaces the connection once the server dropped it.

        Without reading, a drop shows only in the TCP state. A server that closes while its
        answers are still unsent queues its FIN behind them, where this client never sees it;
        but the request sent here, arriving at a closed socket, is answered with a reset.
        """
        info = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        if info[0] == TCP_ESTABLISHED:
            self.send(conn, PIPELINED)
            self.later(1.0, conn, self.pipeline_check)
            return
        self.stats["pipeline"]["dropped_after_s"].append(round(time.monotonic() - conn.born, 1))
        self.close(conn)

    def h2_timeout(self, conn):
        if not conn.closed:
            self.stats["h2"]["unanswered"] += 1
            self.close(conn)

    def h2_stream(self, now):
        """Starts HTTP/2.0 connections at H2_RATE; a stalled server does not build a backlog."""
        due = int((now - self.attack_started) * H2_RATE)
        while self.h2_started < due:
            self.h2_started += 1
            if self.h2_waiting >= H2_IN_FLIGHT:
                continue
            self.h2_waiting += 1
            self.start("h2", H2_REQUESTS[self.h2_started % len(H2_REQUESTS)])

    # -- commands ---------------------------------------------------------------------------

    def attack(self):
        """Turns the idle connections into slowloris and starts the other attackers."""
        self.attacking = True
        self.attack_started = time.monotonic()
        for conn in list(self.conns):
            if conn.kind == "slowloris" and conn.connected:
                # Spread the first heads over one interval, so that the 408s (and reconnects)
                # do not all land in the same instant. One still connecting starts on connect.
                self.later(random.uniform(0, SLOWLORIS_EVERY), conn, self.slowloris_head)
        for i in range(TRICKLES):
            self.start("trickle", TRICKLE_KINDS[i % len(TRICKLE_KINDS)])
        for _ in range(PIPELINERS):
            self.start("pipeline")
        self.emit("attacking")

    def stop(self):
        """Closes every attacking connection and reports what the attackers saw."""
        self.stopping = True
        self.stats["h2"]["in_flight_at_stop"] = sum(
            1 for conn in self.conns if conn.kind == "h2" and conn.connected)
        for conn in list(self.conns):
            self.close(conn, reconnect=False)
        self.emit("stopped", stats=self.stats)

    def run(self):
        """The loop: until `stop`, end of stdin, or the hard deadline."""
        os.set_blocking(0, False)
        self.selector.register(0, selectors.EVENT_READ, "stdin")
        for _ in range(self.idle):
            self.start("slowloris")
        started = time.monotonic()
        idle_reported = False
        next_sample = 0.0
        commands = b""
        while not self.stopping:
            now = time.monotonic()
            if now > self.deadline:
                break
            self.pump()
            timeout = 0.005 if self.to_open else 0.05
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - now))
            for key, _ in self.selector.select(timeout):
                if key.data == "stdin":
                    chunk = os.read(0, 1024)
                    if not chunk:
                        self.stopping = True  # the benchmark process is gone
                        break
                    commands += chunk
                elif key.data.connected:
                    self.on_readable(key.data)
                else:
                    self.on_writable(key.data)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, conn, callback = heapq.heappop(self.timers)
                if conn is None or not conn.closed:
                    callback(conn)
            if not idle_reported and (self.open["slowloris"] >= self.idle or now - started > 12):
                idle_reported = True
                self.emit("idle", connected=self.open["slowloris"], seconds=round(now - started, 2),
                          connect_errors=self.stats["connect_errors"])
            if self.attacking:
                self.h2_stream(now)
                if now >= next_sample and now - self.attack_started > SLOWLORIS_EVERY:
                    # How many slowloris connections are held open, once all have started.
                    next_sample = now + 0.5
                    s = self.stats["slowloris"]
                    opened = self.open["slowloris"]
                    s["open_min"] = opened if s["open_min"] is None else min(s["open_min"], opened)
                    s["open_max"] = max(s["open_max"], opened)
            while b"\n" in commands:
                line, commands = commands.split(b"\n", 1)
                if line.strip() == b"attack" and not self.attacking:
                    self.attack()
                elif line.strip() == b"stop":
                    self.stopping = True
        self.stop()


def attack_main(argv):
    """`hostile.py attack SETTINGS_JSON`: the child process (settings: see `measure()`)."""
    settings = json.loads(argv[0])
    raise_fd_limit()
    Attackers(settings["port"], settings["idle"], settings["body"].encode(),
              settings["pipeline_depth"], time.monotonic() + settings["seconds"]).run()


def pipeline_depth(response_bytes):
    """How many answers a pipeliner asks for at once: enough to overflow the kernel's buffers.

    On loopback (64 KiB segments) Linux sizes a send buffer at up to tcp_wmem's maximum (4 MiB)
    at once, so ~20 answers of a few KiB would all be swallowed by the kernel and the server's
    write would never block. Twice that maximum over the answer's size makes it block, which is
    what WRITE_TIMEOUT is for.
    """
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
            most = int(wmem.read().split()[2])
    except (OSError, ValueError, IndexError):
        most = 4 << 20
    return max(20, min(5000, -(-2 * most // max(1, response_bytes))))


# ---------------------------------------------------------------------------------------------
# The measurement (benchmark process)
# ---------------------------------------------------------------------------------------------

def counts(pid):
    """(threads, open descriptors) of a process."""
    with open(f"/proc/{pid}/status") as status:
        threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_until(condition, seconds, every=0.1):
    """Polls `condition` until it holds or `seconds` pass; returns the seconds it took, or None."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            return None
        time.sleep(every)


def read_response(sock):
    """Reads one response with a Content-Length body; returns (status, keep-alive, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    remaining = int(length.group(1)) - len(body) if length else 0
    while remaining > 0:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
        remaining -= len(chunk)
    keep = not re.search(rb"(?im)^connection:\s*close", head)
    return status, keep, body


def settled_counts(pid, seconds=5):
    """(threads, descriptors) once two readings 0.25 s apart agree (the warm-up connections'
    threads take a moment to end), or the last reading after `seconds`."""
    previous = counts(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = counts(pid)
        if current == previous:
            break
        previous = current
    return previous


class Prober:
    """GET /health, one request at a time on one keep-alive connection, timing each."""

    REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.latencies_ms = []
        self.statuses = collections.Counter()
        self.errors = 0

    def probe(self):
        started = time.perf_counter()
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=PROBE_TIMEOUT)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(self.REQUEST)
            status, keep, _ = read_response(self.sock)
            self.statuses[status] += 1
            if not keep:
                self.close()
        except OSError:
            # A timeout, reset or early close: a failed probe, timed up to when it failed.
            self.errors += 1
            self.close()
        self.latencies_ms.append((time.perf_counter() - started) * 1000)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def login(port, user, result):
    """A normal JSON login on a new connection; stores its status and seconds in `result`."""
    body = json.dumps({"email": user["email"], "password": user["password"]}).encode()
    request = (b"POST /auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            result["status"] = read_response(sock)[0]
    except OSError as err:
        result["status"] = None
        result["error"] = str(err)
    result["seconds"] = time.perf_counter() - started


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def measure(server, seconds, user):
    """Runs the whole scenario against a freshly started `server`; returns the figures.

    `server` is bench/run.py's Server: a `process` (the release binary), a `port`, `post()`
    and `get()`. `user` is registered, then logs in once during the mix.
    """
    pid, port = server.process.pid, server.port
    raise_fd_limit()
    result = {"idle": IDLE_CONNECTIONS, "seconds": seconds}

    # The user to log in as, a warm-up request and the size of an answer to pipeline; then the
    # baseline, once it holds still.
    server.post("/auth/register", user)
    server.get("/health")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(PIPELINED)
        response_bytes = len(read_response(sock)[2]) + 200  # + a head of about that size
    result["pipeline_depth"] = depth = pipeline_depth(response_bytes)
    base_threads, base_fds = result["baseline"] = settled_counts(pid)
    base_rss = status_kb(pid, "VmRSS")

    settings = {"port": port, "idle": IDLE_CONNECTIONS, "pipeline_depth": depth,
                "body": json.dumps({"email": user["email"], "password": user["password"]}),
                "seconds": seconds + 90}  # the attackers' own deadline, should this one die
    attacker = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "attack", json.dumps(settings)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    events = queue.Queue()
    threading.Thread(target=lambda: [events.put(json.loads(line)) for line in attacker.stdout],
                     daemon=True).start()

    def wait_event(name, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event["event"] == name:
                return event
        raise RuntimeError(f"hostile mix: the attackers never said {name!r}")

    def command(line):
        attacker.stdin.write(line + "\n")
        attacker.stdin.flush()

    try:
        # 1. Idle: the connections are open once the server holds a thread and a descriptor
        #    for each (the client's connect completes before the server accepts).
        result["idle_connect"] = wait_event("idle", 15)  # 2.5 s at CONNECTS_PER_SECOND
        accepted = wait_until(lambda: min(c - b for c, b in zip(counts(pid), (base_threads, base_fds)))
                              >= IDLE_CONNECTIONS, 10)
        result["idle_accepted_s"] = accepted
        result["idle_counts"] = counts(pid)
        result["idle_rss_kb"] = status_kb(pid, "VmRSS")
        result["idle_kb_each"] = (result["idle_rss_kb"] - base_rss) / IDLE_CONNECTIONS

        # 2. The mix, for `seconds`, with /health probed throughout and one login halfway.
        command("attack")
        wait_event("attacking", 10)
        prober = Prober(port)
        login_result = {}
        login_thread = threading.Thread(target=login, args=(port, user, login_result))
        login_started = False
        peak_threads = peak_fds = 0
        started = time.monotonic()
        next_probe = next_sample = started
        while (now := time.monotonic()) - started < seconds:
            if now >= next_sample:
                threads, fds = counts(pid)
                peak_threads, peak_fds = max(peak_threads, threads), max(peak_fds, fds)
                next_sample = now + 0.5
            if not login_started and now - started >= seconds / 2:
                login_started = True
                login_thread.start()  # on a thread of its own, so the probes go on meanwhile
            prober.probe()
            next_probe += PROBE_EVERY
            time.sleep(max(0.0, next_probe - time.monotonic()))
        probed = time.monotonic() - started
        login_thread.join(timeout=30)
        result["probe"] = {
            "count": len(prober.latencies_ms), "seconds": probed,
            "p50_ms": percentile(prober.latencies_ms, 50), "p99_ms": percentile(prober.latencies_ms, 99),
            "max_ms": max(prober.latencies_ms, default=float("nan")),
            "statuses": dict(prober.statuses), "errors": prober.errors,
        }
        result["login"] = login_result
        result["peak"] = {"threads": peak_threads, "fds": peak_fds,
                          "rss_kb": status_kb(pid, "VmHWM")}

        # 3. Stop every attacker, close the probe connection too, and wait for the baseline.
        command("stop")
        result["attackers"] = wait_event("stopped", 10)["stats"]
        stopped = time.monotonic()
        prober.close()
    finally:
        if attacker.poll() is None:
            attacker.stdin.close()
            try:
                attacker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                attacker.kill()
                attacker.wait()
    back = wait_until(lambda: all(c <= b + BASELINE_SLACK
                                  for c, b in zip(counts(pid), (base_threads, base_fds))),
                      BACK_TO_BASELINE_WAIT)
    result["back_s"] = None if back is None else time.monotonic() - stopped
    result["after"] = counts(pid)
    result["rss_kb"] = {"baseline": base_rss, "after": status_kb(pid, "VmRSS")}
    try:
        result["alive_after"] = server.get("/health") == 200
    except OSError:
        result["alive_after"] = False
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["attack"]:
        attack_main(sys.argv[2:])
    else:
        raise SystemExit("run through bench/run.py: python3 bench/run.py --only hostile")
