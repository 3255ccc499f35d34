# TensorBoard itself, from PyPI, serving a logdir on the loopback interface: prints its runs, its
# HParams experiment and session groups (through the HTTP API its dashboard uses) as one JSON line.
#   tensorboard_hparams.py LOGDIR SESSIONS   (waits, up to 2 minutes, until it lists SESSIONS sessions)
import json, re, subprocess, sys, threading, time, urllib.request
logdir = sys.argv[1]
# --port=0: TensorBoard takes a free port itself and prints its address (no race for a port).
tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
                       "--port", "0", "--load_fast=false", "--reload_interval=1"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seen = []
for line in tb.stderr:
    seen.append(line)
    m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if m:
        break
else:
    raise SystemExit("tensorboard did not start: " + "".join(seen)[-2000:])
base = m.group(1)
threading.Thread(target=lambda: [None for _ in tb.stderr], daemon=True).start()  # keep its pipe drained
def get(path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "text/plain"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())
expected = int(sys.argv[2])
request = {"experimentName": "", "startIndex": 0, "sliceSize": 100,
           "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
try:
    t0 = time.time()
    while True:  # until TensorBoard has loaded every session (it reloads every second)
        try:
            runs = get("/data/runs")
            exp = get("/data/plugin/hparams/experiment", {"experimentName": ""})
            groups = get("/data/plugin/hparams/session_groups",
                         dict(request, colParams=[{"hparam": h["name"]} for h in exp.get("hparamInfos", [])]))
            if len(groups.get("sessionGroups", [])) >= expected:
                break
        except Exception:
            pass
        if time.time() - t0 > 120 or tb.poll() is not None:
            raise SystemExit("tensorboard did not list %d sessions of %s in 2 minutes" % (expected, logdir))
        time.sleep(0.5)
    print(json.dumps({"runs": runs, "experiment": exp, "groups": groups, "seconds": time.time() - t0}))
finally:
    tb.terminate(); tb.wait()
