# lat.py PATH N — sequential GETs over one keep-alive connection to a running fleetmon; prints
# p50/p99/max in ms. FLEETMON_BENCH_ADDR (host:port, default 127.0.0.1:8080) and
# FLEETMON_BENCH_TOKEN (a read token of the seeded org) say where and as whom.
import http.client, os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
token = os.environ["FLEETMON_BENCH_TOKEN"]
host, port = os.environ.get("FLEETMON_BENCH_ADDR", "127.0.0.1:8080").rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port))
times = []
for i in range(n + 3):
    t = time.perf_counter()
    conn.request('GET', path, headers={'Authorization': 'Bearer ' + token})
    r = conn.getresponse(); body = r.read()
    assert r.status == 200, (r.status, body[:200])
    if i >= 3: times.append((time.perf_counter() - t) * 1000)
times.sort()
q = lambda p: times[min(len(times) - 1, int(round(p * (len(times) - 1))))]
print(f"{path[:90]:90s} n={n} p50={q(0.5):.1f} p99={q(0.99):.1f} max={times[-1]:.1f} ms  bytes={len(body)}")
