#!/usr/bin/env python3
"""The benchmark behind `make bench`: the release binary under a real HTTP load generator.

Each scenario starts the release binary on a fresh SQLite database, drives it with wrk (one Lua
script per route, bench/*.lua), and reads its peak memory (VmHWM) when the load ends. Load
generator and server share this machine, as the targets assume. The table printed at the end
puts every target beside its figure; README.md's "Performance" section is a copy of it.

Usage: python3 bench/run.py [--quick]   (make bench builds the release binary first)
Needs: wrk (Debian package `wrk`), Python 3, a release build at target/release/backnd-api.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "backnd-api")
BENCH = os.path.join(ROOT, "bench")
QUICK = "--quick" in sys.argv
SECONDS = 5 if QUICK else 15
CORES = os.cpu_count() or 1
SECRET = "benchmark-secret-0123456789abcdef0123456789"
USER = {"name": "Bench User", "phone": "+1 555 0100", "email": "bench@example.com",
        "password": "benchmark-password"}


class Server:
    """The release binary on a free port with a fresh database, until stopped."""

    def __init__(self, **env):
        self.dir = tempfile.mkdtemp(prefix="backnd-bench-")
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": f"sqlite:///{self.dir}/db.sqlite3",
            "HOST": "127.0.0.1",
            "PORT": "0",
            "JWT_SECRET": SECRET,
            "RUST_LOG": "info",  # the access log stays on, as in production
        }
        environment.update({k: str(v) for k, v in env.items()})
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [BIN], env=environment, cwd=self.dir,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        for line in self.process.stderr:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        if self.port is None:
            raise SystemExit("backnd-api did not start")
        # Keep reading the log (one line per request) so the server never blocks on the pipe.
        threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def rss_kb(self, field="VmRSS"):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def post(self, path, body):
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk(server, script, connections, seconds, path="/", env=None, threads=2):
    """Runs wrk with bench/common.lua + `script`; returns the parsed RESULT line."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        for name in ("common.lua", script):
            with open(os.path.join(BENCH, name)) as part:
                lua.write(part.read() + "\n")
    command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "30s", "-s", lua.name, server.base + path]
    output = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}).stdout
    os.unlink(lua.name)
    match = re.search(r"^RESULT (.*)$", output, re.M)
    if not match:
        raise SystemExit(f"wrk gave no result:\n{output}")
    result = {k: float(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    result["rps"] = result["requests"] / result["seconds"]
    return result


def bcrypt_ceiling(cost):
    """Logins per second the machine can hash: cores × one thread's verify rate."""
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "--example", "bcrypt_rate", "--", str(cost), "5"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return float(out.strip()) * CORES


def start_time_ms():
    """Milliseconds from starting the process to its first answer (median of 5)."""
    samples = []
    for _ in range(5):
        directory = tempfile.mkdtemp(prefix="backnd-bench-")
        port = free_port()
        env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": f"sqlite:///{directory}/db.sqlite3",
               "PORT": str(port), "JWT_SECRET": SECRET, "RUST_LOG": "warn"}
        started = time.perf_counter()
        process = subprocess.Popen([BIN], env=env, cwd=directory,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                time.sleep(0.0005)
        samples.append((time.perf_counter() - started) * 1000)
        process.terminate()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)
    return sorted(samples)[len(samples) // 2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    rows, checks = [], []

    def row(name, r, rss_kb, target="", ok=None):
        rows.append((name, f"{r['rps']:,.1f}", f"{r['p50_us'] / 1000:.2f}", f"{r['p99_us'] / 1000:.2f}",
                     f"{int(r['non2xx'])} ({int(r['fivexx'])} 5xx)", f"{rss_kb / 1024:.1f}", target,
                     "" if ok is None else ("PASS" if ok else "MISS")))
        if ok is not None:
            checks.append(ok)

    print(f"measuring the bcrypt ceiling ({CORES} cores)…", flush=True)
    ceiling = bcrypt_ceiling(12)

    # Idle: a fresh server, nothing asked of it yet.
    server = Server()
    time.sleep(0.5)
    idle_rss = server.rss_kb()
    server.stop()

    peaks = []

    print("GET /health, /auth/me …", flush=True)
    server = Server(BCRYPT_COST=4)
    server.post("/auth/register", USER)
    token = server.post("/auth/login", {"email": USER["email"], "password": USER["password"]})["access_token"]
    r = wrk(server, "get.lua", 16, SECONDS, "/health")
    row("GET /health, 16 keep-alive", r, server.rss_kb("VmHWM"))
    r = wrk(server, "get.lua", 16, SECONDS, "/auth/me", env={"TOKEN": token})
    row("GET /auth/me, 16 keep-alive", r, server.rss_kb("VmHWM"), "≥ 20,000 req/s", r["rps"] >= 20000)
    peaks.append(server.rss_kb("VmHWM"))
    server.stop()

    print("login at cost 4 …", flush=True)
    server = Server(BCRYPT_COST=4)
    server.post("/auth/register", USER)
    r = wrk(server, "login.lua", 16, SECONDS, "/auth/login")
    row("POST /auth/login, cost 4, 16 conns", r, server.rss_kb("VmHWM"), "≥ 1,500 req/s",
        r["rps"] >= 1500 and r["non2xx"] == 0)
    peaks.append(server.rss_kb("VmHWM"))
    server.stop()

    print("login at cost 12, and /health during it …", flush=True)
    server = Server(BCRYPT_COST=12)
    server.post("/auth/register", USER)
    r = wrk(server, "login.lua", 16, max(SECONDS, 10), "/auth/login")
    share = r["rps"] / ceiling
    row("POST /auth/login, cost 12, 16 conns", r, server.rss_kb("VmHWM"),
        f"≥ 90% of {ceiling:.2f}/s ceiling: {share:.0%}", share >= 0.9 and r["non2xx"] == 0)
    flood = {}
    flooding = threading.Thread(target=lambda: flood.update(
        wrk(server, "login.lua", 16, SECONDS + 4, "/auth/login", threads=1)))
    flooding.start()
    time.sleep(2)
    r = wrk(server, "get.lua", 1, SECONDS, "/health", threads=1)
    flooding.join()
    row("GET /health during that flood, 1 conn", r, server.rss_kb("VmHWM"), "p99 ≤ 10 ms",
        r["p99_us"] <= 10_000 and r["non2xx"] == 0)
    peaks.append(server.rss_kb("VmHWM"))
    server.stop()

    print("registration flood …", flush=True)
    server = Server()
    r = wrk(server, "register.lua", 16, SECONDS, "/auth/register")
    row("POST /auth/register, cost 12, 16 conns", r, server.rss_kb("VmHWM"), "zero 5xx",
        r["fivexx"] == 0 and r["socket_errors"] == 0)
    peaks.append(server.rss_kb("VmHWM"))
    server.stop()

    print("overload: 64 logins at once against a queue of 8 …", flush=True)
    server = Server(BCRYPT_COST=12, HASH_QUEUE_SIZE=8, HASH_QUEUE_TIMEOUT=2)
    server.post("/auth/register", USER)
    r = wrk(server, "login.lua", 64, SECONDS, "/auth/login")
    served = int(r["requests"] - r["non2xx"])
    row("POST /auth/login, cost 12, 64 conns, queue 8", r, server.rss_kb("VmHWM"),
        f"excess 503 at once, {served} served; max wait {r['max_us'] / 1000:,.0f} ms ≤ 2,000 ms",
        r["s503"] > 0 and served > 0 and r["max_us"] <= 2_000_000 and r["fivexx"] == r["s503"])
    peaks.append(server.rss_kb("VmHWM"))
    server.stop()

    start_ms = start_time_ms()
    size = os.path.getsize(BIN)

    header = ("scenario", "req/s", "p50 ms", "p99 ms", "non-2xx", "peak RSS MB", "target", "")
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print()
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()
    extra = [
        ("idle RSS", f"{idle_rss / 1024:.1f} MB", "≤ 10 MB", idle_rss <= 10 * 1024),
        ("peak RSS, any scenario", f"{max(peaks) / 1024:.1f} MB", "≤ 30 MB", max(peaks) <= 30 * 1024),
        ("start to first answer", f"{start_ms:.1f} ms", "≤ 50 ms", start_ms <= 50),
        ("bcrypt ceiling, cost 12", f"{ceiling:.2f} logins/s ({CORES} cores)", "", None),
        ("release binary", f"{size / 1024 / 1024:.2f} MiB", "", None),
    ]
    for name, figure, target, ok in extra:
        mark = "" if ok is None else ("PASS" if ok else "MISS")
        print(f"  {name:<26} {figure:<30} {target:<10} {mark}")
        if ok is not None:
            checks.append(ok)
    print()
    print(f"bench: {sum(checks)} targets met, {len(checks) - sum(checks)} missed")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
