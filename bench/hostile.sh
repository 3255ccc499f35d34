#!/usr/bin/env bash
# A hostile user's cases against the command line, each in a fresh copy of a small main folder:
# what the second probe of docs/RELIABILITY.md found, and the first probe's kills and resumes.
# A case holds when the command refuses (rc != 0) with a message naming what is wrong, or does the
# right thing, and nothing of the user's is changed. Prints one line per case and the count.
#   bench/hostile.sh [BUILD]        (default build/; about 3 minutes on 2 cores)
set -u
BUILD=${1:-build}
QL=$(realpath "$BUILD/quantlab")
INFER=$(realpath "$BUILD/quantlab-infer" 2>/dev/null || true)
SRC=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/quantlab-hostile.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
tried=0 held=0
failed=()

# IDX files of a toy problem: N training and M test images of 28x28, 4 classes.
write_idx() {  # DIR NTRAIN NTEST [TEST_LABEL_OVERRIDE]
  python3 - "$@" <<'EOF'
import gzip, struct, sys, random, os
d, ntr, nte = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bad = int(sys.argv[4]) if len(sys.argv) > 4 else None
os.makedirs(d, exist_ok=True)
rnd = random.Random(0)
def write(name, dims, data):
    with gzip.open(os.path.join(d, name + ".gz"), "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", x) for x in dims) + data)
for part, n in (("train", ntr), ("t10k", nte)):
    labels = bytes(i % 4 for i in range(n))
    if part == "t10k" and bad is not None and n > 3:
        labels = labels[:3] + bytes([bad]) + labels[4:]
    img = bytearray()
    for i in range(n):
        img += bytes((40 * (i % 4) + rnd.randrange(60)) for _ in range(784))
    write(part + "-images-idx3-ubyte", [n, 28, 28], bytes(img))
    write(part + "-labels-idx1-ubyte", [n], labels)
EOF
}

config() {  # EPOCHS [python expression editing c]
  python3 - "$SRC/FashionMNIST/config.json" "$1" "${2:-}" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["indiv"]["net"]["params"]["capacity"] = 0.02
for k, b in enumerate(c["treat"]["thermostat"]["params"]["bindings"]):
    b["forward"]["params"] = {"t_start": k, "t_decay": 2}
c["treat"]["max_epoch"] = int(sys.argv[2])
c["treat"]["data"]["bs_train"] = 32
c["treat"]["lr_scheduler"] = {"class": "HandScheduler", "params": {"schedule": {}}}
if sys.argv[3]:
    exec(sys.argv[3])
print(json.dumps(c, indent=1))
EOF
}

# The base main folder: Toy with data and a trained experiment 1 (2 epochs).
BASE=$WORK/base
mkdir -p "$BASE/Toy"
write_idx "$BASE/Toy/data" 320 64
config 2 >"$BASE/Toy/config.json"
(cd "$BASE" && "$QL" --problem=Toy --topology=MLP --threads=1 --device=cpu --ckpt_every=1 >"$WORK/base.log" 2>&1) ||
  { echo "the base run failed:"; cat "$WORK/base.log"; exit 1; }

H=""  # the case's main folder
new_case() {  # a copy of the base folder, its links (into its own storage) pointing into the copy
  H=$WORK/case$tried
  rm -rf "$H"
  cp -a "$BASE" "$H"
  local l t
  for l in $(find "$H" -maxdepth 2 -type l); do t=$(readlink "$l"); ln -sfn "${t/#$BASE/$H}" "$l"; done
}
ql() { (cd "$H" && timeout 120 "$QL" "$@" --home="$H" 2>&1); }
train() { ql --problem=Toy --topology=MLP --threads=1 --device=cpu "$@"; }
saves=Toy/logs/exp001/saves

# case NAME CHECK: CHECK is a shell snippet returning 0 when the case held; $out holds the output.
case_() {
  local name=$1 check=$2
  tried=$((tried + 1))
  if (eval "$check") >"$WORK/check.log" 2>&1; then
    held=$((held + 1)); echo "held    $name"
  else
    failed+=("$name"); echo "FAILED  $name"; sed 's/^/        /' "$WORK/check.log" | tail -5
  fi
}
refused() { local rc=$1 needle=$2; [ "$rc" -ne 0 ] && grep -qF -- "$needle" <<<"$out" || { echo "rc $rc: $out"; return 1; }; }
unchanged() { cmp -s "$1" "$2" || { echo "$2 changed"; return 1; }; }
no_new_exp() { [ "$(ls "$H/Toy/logs" | grep -c '^exp')" -eq 1 ] || { ls "$H/Toy/logs"; return 1; }; }

echo "QuantLab hostile cases ($QL, $(nproc) cores)"

# --- 1. valprep ---
valprep_case() {  # NAME LABEL-LINES NEEDLE
  new_case
  mkdir -p "$H/val/sub" "$H/val/other"; echo a >"$H/val/sub/img.JPEG"; echo b >"$H/val/other/img.JPEG"
  echo mine >"$H/outside.JPEG"; echo c >"$H/val/x.JPEG"
  printf "$2" >"$H/labels.txt"
  local before; before=$(cd "$H" && find val outside.JPEG -type f | sort | xargs md5sum)
  out=$(timeout 60 "$QL" valprep --images "$H/val" --labels "$H/labels.txt" 2>&1); local rc=$?
  case_ "$1" "refused $rc '$3' && [ \"\$(cd $H && find val outside.JPEG -type f | sort | xargs md5sum)\" = '$before' ]"
}
valprep_case "valprep: two sub/ names with one base name" "sub/img.JPEG n01440764\nother/img.JPEG n01440764\n" "not a plain file name"
valprep_case "valprep: an absolute name outside the folder" "$WORK/case$tried/outside.JPEG n01440764\n" "not a plain file name"
valprep_case "valprep: ../ out of the folder" "../outside.JPEG n01440764\n" "not a plain file name"
valprep_case "valprep: an image listed twice" "x.JPEG n01440764\nx.JPEG n01443537\n" "listed twice"
valprep_case "valprep: a name that is ." ". n01440764\n" "not a plain file name"

# --- 2. export --out and infer --labels ---
new_case; cp "$H/$saves/../config.json" "$WORK/cfg.bak"
out=$(ql export --problem=Toy --exp_id=1 --no_check --out="$H/Toy/logs/exp001/config.json"); rc=$?
case_ "export --out: the experiment's config.json" "refused $rc 'is there already' && unchanged $WORK/cfg.bak $H/Toy/logs/exp001/config.json"
new_case; ln -s "$H/Toy/config.json" "$H/link.qlm"
out=$(ql export --problem=Toy --exp_id=1 --no_check --out="$H/link.qlm"); rc=$?
case_ "export --out: a symbolic link" "refused $rc 'a symbolic link is there already' && [ -L $H/link.qlm ]"
new_case
out=$(ql export --problem=Toy --exp_id=1 --no_check --out=/dev/full); rc=$?
case_ "export --out: a device (/dev/full)" "refused $rc 'a device or special file' && [ -c /dev/full ]"
new_case
out=$(ql export --problem=Toy --exp_id=1 --no_check --out="$H/no/such/dir/x.qlm"); rc=$?
case_ "export --out: folders that do not exist" "refused $rc 'does not create it' && [ ! -e $H/no ]"
new_case
out=$(ql export --problem=Toy --exp_id=1 --no_check --out="$H/Toy"); rc=$?
case_ "export --out: a folder" "refused $rc 'a folder is there already'"
new_case
out=$(ql export --problem=Toy --exp_id=1); rc=$?
model=$(ls "$H"/Toy/logs/exp001/export/*.qlm 2>/dev/null | head -1)
echo keep >"$H/mine.txt"
out=$(ql infer --model="$model" --problem=Toy --labels="$H/mine.txt"); rc=$?
case_ "infer --labels: a file of the user's" "refused $rc 'is there already' && [ \"\$(cat $H/mine.txt)\" = keep ]"
mkdir -p "$H/empty"; python3 -c "
import gzip,struct
for p,d in (('t10k-images-idx3-ubyte',[0,28,28]),('t10k-labels-idx1-ubyte',[0])):
    open('$H/empty/'+p,'wb').write(struct.pack('>BBBB',0,0,8,len(d))+b''.join(struct.pack('>I',x) for x in d))"
out=$(ql infer --model="$model" --data="$H/empty"); rc=$?
case_ "infer: an empty test set" "refused $rc 'the test set has no images'"
write_idx "$H/bad" 8 8 200
out=$(ql infer --model="$model" --data="$H/bad"); rc=$?
case_ "infer: a test label 200" "refused $rc 'label 200 of test image 3'"

# --- 3 and 4. branches ---
new_case; python3 -c "
import json; f='$H/Toy/logs/exp001/config.json'; c=json.load(open(f)); c['treat']['max_epoch']=2; json.dump(c,open(f,'w'))"
out=$(train --exp_id=1 --load=last --branch); rc=$?
case_ "a branch at the final epoch holds last.ckpt and best.ckpt" \
  "[ $rc -eq 0 ] && [ -f $H/Toy/logs/exp002/saves/last.ckpt ] && [ -f $H/Toy/logs/exp002/saves/best.ckpt ]"
out=$(train --exp_id=2 --mode=test); rc=$?
case_ "--mode=test on a branch that never beat its inherited best" "[ $rc -eq 0 ] && grep -q 'best.ckpt' <<<\"\$out\""
out=$(ql list --problem=Toy); rc=$?
case_ "list: the branch shows its inherited best" "[ $rc -eq 0 ] && grep -E '^exp002 +MLP +2/2 +[12] +[0-9.]+%' <<<\"\$out\""
new_case; python3 -c "
import json; f='$H/Toy/logs/exp001/config.json'; c=json.load(open(f)); c['treat']['max_epoch']=6; json.dump(c,open(f,'w'))"
(cd "$H" && timeout -s INT 1 "$QL" --problem=Toy --topology=MLP --threads=1 --device=cpu --home="$H" --exp_id=1 --load=1 --branch >/dev/null 2>&1)
out=$(train --exp_id=2); rc=$?
case_ "a branch stopped at once resumes where it branched" \
  "[ ! -d $H/Toy/logs/exp002 ] || { [ $rc -eq 0 ] && ! grep -q 'epoch 1/6' <<<\"\$out\"; }"

# --- 5. non-finite losses ---
nan_case() {  # NAME EDIT
  new_case; config 2 "$2" >"$H/Toy/config.json"
  out=$(train); local rc=$?
  case_ "$1" "refused $rc 'the training diverged' && grep -q 'epoch 1, step' <<<\"\$out\" && ! grep -q 'labels agree' <<<\"\$out\""
}
nan_case "NaN loss: CrossEntropyLoss with all-zero weights" \
  'c["indiv"]["loss_function"]={"class":"CrossEntropyLoss","params":{"weight":[0]*10}}'
nan_case "NaN loss: SGD at lr 1e30" 'c["treat"]["optimizer"]={"class":"SGD","params":{"lr":1e30}}'
new_case; config 2 'c["treat"]["optimizer"]={"class":"RMSprop","params":{"lr":1e-3,"alpha":2}}' >"$H/Toy/config.json"
out=$(train); rc=$?
case_ "RMSprop alpha 2" "[ $rc -ne 0 ] && grep -qE 'alpha|diverged' <<<\"\$out\" && no_new_exp"
new_case; python3 -c "
import json; f='$H/Toy/logs/exp001/config.json'; c=json.load(open(f)); c['treat']['max_epoch']=3
c['indiv']['loss_function']={'class':'CrossEntropyLoss','params':{'weight':[0]*10}}; json.dump(c,open(f,'w'))"
cp "$H/$saves/last.ckpt" "$WORK/last.bak"
out=$(train --exp_id=1); rc=$?
case_ "NaN on resume keeps the last good checkpoint and says how to resume" \
  "refused $rc 'is the last good state' && grep -q 'resume with: quantlab' <<<\"\$out\" && unchanged $WORK/last.bak $H/$saves/last.ckpt"

# --- 7. useless trainings ---
new_case; config 4 'c["treat"]["lr_scheduler"]={"class":"CosineAnnealingLR","params":{"T_max":2}}' >"$H/Toy/config.json"
out=$(train); rc=$?
case_ "CosineAnnealingLR T_max 2 of 4 epochs" "refused $rc 'would train at it' && no_new_exp"
new_case; config 2 'c["treat"]["data"]["valid_fraction"]=0.99999' >"$H/Toy/config.json"
out=$(train); rc=$?
case_ "valid_fraction 0.99999" "refused $rc 'treat.data.valid_fraction' && no_new_exp"

# --- 8. data without bounds ---
lbl=Toy/data/train-labels-idx1-ubyte
new_case; rm "$H/$lbl.gz"; ln -s /dev/zero "$H/$lbl"
out=$(train); rc=$?
case_ "labels linked to /dev/zero" "refused $rc '$lbl: is a device' && no_new_exp"
new_case; rm "$H/$lbl.gz"; mkfifo "$H/$lbl"
out=$(train); rc=$?
case_ "labels a FIFO" "refused $rc 'is a FIFO' && no_new_exp"
new_case; rm "$H/$lbl.gz"; python3 -c "
import gzip,struct
with gzip.open('$H/$lbl.gz','wb') as f: f.write(struct.pack('>BBBBII',0,0,8,2,2**31,2**31))"
out=$(train); rc=$?
case_ "a gzip whose header declares 4 EiB" "refused $rc 'more data than this machine' && no_new_exp"
new_case; rm "$H/$lbl.gz"; python3 -c "
import gzip,struct
with gzip.open('$H/$lbl.gz','wb') as f:
    f.write(struct.pack('>BBBBI',0,0,8,1,320)+bytes(320))
    for _ in range(64): f.write(bytes(1<<20))"
out=$(train); rc=$?
case_ "a gzip inflating to 64 MiB more than its header says" "refused $rc 'more data than its header declares' && no_new_exp"
new_case; python3 -c "
import json; c=json.load(open('$H/Toy/config.json')); c['pad']='x'*(50<<20); json.dump(c,open('$H/Toy/config.json','w'))"
out=$(train); rc=$?
case_ "a 50 MB config" "refused $rc 'KiB a JSON file may have' && no_new_exp"

# --- 9. pretrained and storage ---
pre_case() {  # NAME PRETRAINED-JSON
  new_case; config 1 "c['indiv']['net']['pretrained']=$2" >"$H/Toy/config.json"
  out=$(train); local rc=$?
  case_ "$1" "[ $rc -ne 0 ] && grep -q pretrained <<<\"\$out\" && no_new_exp && [ -z \"\$(ls -A $H/Toy/logs | grep -v '^exp001$')\" ]"
}
pre_case "pretrained: a missing experiment" '{"exp_id": 42}'
pre_case "pretrained: a missing epoch" '{"exp_id": 1, "epoch": 7}'
pre_case "pretrained: a prefix matching nothing" '{"exp_id": 1, "epoch": "best", "prefixes": ["nothing"]}'
pre_case "pretrained: the experiment itself" '{"exp_id": 2}'
new_case; mkdir -p "$H/P"; ln -s "$H/gone" "$H/P/logs"; before=$(cd "$H" && find . | sort)
out=$(ql problem add P); rc=$?
case_ "problem add with a dangling logs link" "[ $rc -ne 0 ] && [ \"\$(cd $H && find . | sort)\" = \"$before\" ]"
new_case; mkdir -p "$H/cfg" "$H/d"; echo "{\"data\": \"$H/d\", \"logs\": \"/proc\"}" >"$H/cfg/hard_storage.json"
before=$(cd "$H" && find . | sort)
out=$(ql problem add P); rc=$?
case_ "problem add with logs on /proc" "[ $rc -ne 0 ] && [ \"\$(cd $H && find . | sort)\" = \"$before\" ]"

# --- 10. the lock ---
new_case; echo precious >"$WORK/victim"; rm -f "$H/Toy/logs/exp001/.lock"; ln -s "$WORK/victim" "$H/Toy/logs/exp001/.lock"
out=$(train --exp_id=1); rc=$?
case_ "the lock linked to a file outside" "refused $rc 'is a symbolic link' && [ \"\$(cat $WORK/victim)\" = precious ]"

# --- 11. distributed ---
new_case; python3 -c "
import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1); s.bind(('127.0.0.1',0)); s.listen(5)
open('$H/port','w').write(str(s.getsockname()[1])); time.sleep(90)" & listener=$!
sleep 1; port=$(cat "$H/port"); t0=$(date +%s)
out=$(cd "$H" && RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 120 "$QL" --problem=Toy \
  --topology=MLP --threads=1 --device=cpu --home="$H" --dist_timeout=5 2>&1); rc=$?; took=$(($(date +%s) - t0))
kill $listener 2>/dev/null
case_ "rank 1 against a busy master port, --dist_timeout=5 (${took} s)" "refused $rc 'does not answer as a QuantLab master' && [ $took -lt 25 ]"
new_case; config 200 >"$H/Toy/config.json"
(cd "$H" && exec "$QL" --problem=Toy --topology=MLP --threads=1 --device=cpu --home="$H" --nproc=2 --dist_timeout=5 \
  --ckpt_every=0 >"$H/run.log" 2>&1) & launcher=$!
for _ in $(seq 600); do [ -f "$H/Toy/logs/exp002/saves/last.ckpt" ] && break; sleep 0.2; done
rank1=$(for p in $(pgrep -P $launcher); do tr '\0' '\n' </proc/$p/environ | grep -qx RANK=1 && echo $p; done)
kill -STOP "$rank1"; t0=$(date +%s); wait $launcher; took=$(($(date +%s) - t0)); out=$(cat "$H/run.log")
case_ "a SIGSTOPped rank, --dist_timeout=5 (${took} s)" "grep -q 'rank 1 (PID $rank1) is stopped' <<<\"\$out\" && [ $took -lt 20 ]"
new_case; config 1 >"$H/Toy/config.json"
out=$(train --nproc=2); python3 -c "
import json; f='$H/Toy/logs/exp002/config.json'; c=json.load(open(f)); c['treat']['max_epoch']=2; json.dump(c,open(f,'w'))"
out=$(train --exp_id=2); rc=$?
case_ "resuming 2 ranks with 1 says it is not bit-identical" "[ $rc -eq 0 ] && grep -q 'not bit-identical' <<<\"\$out\""

# --- 12. smaller ---
new_case; out=$(train --exp_id=1 --config="$H/missing.json"); rc=$?
case_ "--config with --exp_id" "refused $rc '--config'"
new_case; out=$(train --exp_id=1 --load=1 --branch --config="$H/missing.json"); rc=$?
case_ "--config with --branch" "refused $rc '--config' && no_new_exp"
new_case; out=$(ql list --problem=Nope); rc=$?
case_ "list --problem=Nope" "refused $rc 'Nope'"
new_case; mkdir "$H/Toy/logs/exp5"; out=$(ql list --problem=Toy); rc=$?
case_ "folders exp5 and exp001: one row each of what they are" "[ $rc -eq 0 ] && ! grep -q exp005 <<<\"\$out\""
new_case; cp "$H/$saves/best.ckpt" "$WORK/best.bak"; cp "$H/$saves/epoch0001.ckpt" "$H/$saves/last.ckpt"
python3 -c "
import json; f='$H/Toy/logs/exp001/config.json'; c=json.load(open(f)); c['treat']['max_epoch']=3; json.dump(c,open(f,'w'))"
out=$(train --exp_id=1); rc=$?
case_ "a hand rollback (epoch0001.ckpt copied to last.ckpt)" "refused $rc '--branch' && unchanged $WORK/best.bak $H/$saves/best.ckpt"
new_case; rm "$H/$saves/last.ckpt"; out=$(ql list --problem=Toy)
case_ "list with last.ckpt missing suggests no --load=last" "! grep -q 'load=last' <<<\"\$out\""
new_case; echo "{ damaged" >"$H/$saves/status.json"; out=$(ql list --problem=Toy)
case_ "list with a damaged status.json" "grep -q 'status.json is damaged' <<<\"\$out\" && ! grep -q lags <<<\"\$out\""
new_case; python3 -c "
import gzip,struct
with gzip.open('$H/Toy/data/train-images-idx3-ubyte.gz','wb') as f: f.write(struct.pack('>BBBBIII',0,0,8,3,320,20,20)+bytes(320*400))"
out=$(train); rc=$?
case_ "a shape error names the image file" "refused $rc 'train-images-idx3-ubyte' && ! grep -q 'labels-idx1' <<<\"\$out\""

# --- the first launch on the data drive ---
for problem in Toy FashionMNIST; do
  new_case; rm -rf "$H/Toy/data" "$H/Toy/logs"; mkdir -p "$H/fast" "$H/large" "$H/cfg" "$H/$problem"
  config 1 >"$H/$problem/config.json"
  echo "{\"data\": \"$H/fast\", \"logs\": \"$H/large\"}" >"$H/cfg/hard_storage.json"
  write_idx "$H/fast/QuantLab/$problem/data" 160 32
  out=$(ql --problem=$problem --topology=MLP --threads=1 --device=cpu); rc=$?
  case_ "first launch with $problem's data on the data drive" \
    "[ $rc -eq 0 ] && grep -q 'from $H/fast/QuantLab/$problem/data' <<<\"\$out\" && [ -L $H/$problem/data ]"
done

# --- the first probe's kills and resumes ---
new_case; config 3 >"$H/Toy/config.json"
(cd "$H" && exec "$QL" --problem=Toy --topology=MLP --threads=1 --device=cpu --home="$H" --ckpt_every=1 >/dev/null 2>&1) &
pid=$!
for _ in $(seq 600); do [ -f "$H/Toy/logs/exp002/saves/epoch0001.ckpt" ] && break; sleep 0.05; done
kill -9 $pid; wait $pid 2>/dev/null
out=$(train --exp_id=2); rc=$?
case_ "SIGKILL after epoch 1, then resume" "[ $rc -eq 0 ] && grep -q 'continuing from' <<<\"\$out\""
new_case; python3 -c "
import json; f='$H/Toy/logs/exp001/config.json'; c=json.load(open(f)); c['treat']['max_epoch']=3; json.dump(c,open(f,'w'))"
cp "$H/$saves/last.ckpt" "$WORK/last.bak"
out=$(train --exp_id=1 --load=1); rc=$?
case_ "--load=1 after 2 epochs (a rewind)" "refused $rc '--branch' && unchanged $WORK/last.bak $H/$saves/last.ckpt"
new_case; head -c 1000 "$H/$saves/last.ckpt" >"$WORK/t"; cp "$WORK/t" "$H/$saves/last.ckpt"
out=$(train --exp_id=1 --mode=test --load=last); rc=$?
case_ "a truncated last.ckpt" "[ $rc -ne 0 ] && grep -q 'last.ckpt' <<<\"\$out\""

echo
echo "$held of $tried cases held"
for f in "${failed[@]}"; do echo "  not held: $f"; done
[ "$held" -eq "$tried" ]
