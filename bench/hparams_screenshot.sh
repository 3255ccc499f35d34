#!/bin/bash
# A screenshot of TensorBoard's HParams dashboard, taken with Debian's headless Chromium, for the
# experiments of a sweep: TensorBoard from the build's venv serves them on the loopback interface.
#   bench/hparams_screenshot.sh HOME PROBLEM SWEEP OUT.png
# The dashboard opens on its table view (the parallel-coordinates view is a click away: its tab is
# not part of the page's address). Needs `make test` (the venv with TensorBoard) and
# `apt-get install chromium`.
set -euo pipefail
home=$1 problem=$2 sweep=$3 out=$4
py=${QL_TOOLS_PYTHON:-build/venv/bin/python}
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }
record=$home/$problem/sweeps/$sweep/sweep.json
[ -f "$record" ] || { echo "$record: no such sweep record" >&2; exit 2; }
# The sweep's experiments only: one --logdir_spec entry per finished unit (unit name: its levels).
spec=$("$py" - "$record" "$home/$problem/logs" <<'EOF'
import json, sys
record, logs = json.load(open(sys.argv[1])), sys.argv[2]
parts = []
for u in record["units"]:
    if u.get("exp_id") is not None and u.get("state") == "finished":
        parts.append("exp%03d:%s/exp%03d" % (u["exp_id"], logs, u["exp_id"]))
print(",".join(parts))
EOF
)
[ -n "$spec" ] || { echo "sweep $sweep has no finished unit yet" >&2; exit 2; }
log=$(mktemp)
"$py" -m tensorboard.main --logdir_spec "$spec" --host 127.0.0.1 --port 0 --load_fast=false > /dev/null 2> "$log" &
tb=$!
trap 'kill $tb 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 120); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.5
done
[ -n "$url" ] || { echo "tensorboard did not start:" >&2; cat "$log" >&2; exit 1; }
# Until TensorBoard has read the sessions (the dashboard shows what it has at load time).
for _ in $(seq 1 120); do
  n=$(curl -s -X POST -H 'Content-Type: text/plain' -d '{"experimentName": "", "startIndex": 0, "sliceSize": 1000, "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"], "colParams": []}' \
      "$url/data/plugin/hparams/session_groups" | "$py" -c 'import json,sys; print(len(json.load(sys.stdin).get("sessionGroups", [])))' 2>/dev/null || echo 0)
  [ "$n" -gt 0 ] && break
  sleep 0.5
done
echo "TensorBoard at $url lists $n sessions of sweep $sweep"
page="$url/?darkMode=false#hparams"
"$chromium" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1000 \
  --virtual-time-budget=20000 --screenshot="$out" "$page" 2> /dev/null
echo "wrote $out ($page)"
