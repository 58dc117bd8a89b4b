#!/usr/bin/env bash
# The first hour of a new user, scripted: every command the README and docs show a newcomer, run
# from a scratch folder, each checked for its exit code and one key line of output.
#
#   bash experiments/newcomer.sh            # uses `python -m augur_nas.cli` from this checkout
#   AUGUR=augur-nas bash experiments/newcomer.sh   # the installed entry point instead
#
# Prints one line per step (ok / FAIL, seconds) and exits 1 if any step failed.  No step may
# print a Python traceback.  Takes about a minute (the search steps run a few hundred trials).
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
AUGUR="${AUGUR:-python -m augur_nas.cli}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
cd "$T"
FAILED=0
NB201='|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'

# check NAME RC REGEX -- COMMAND...: run COMMAND, require exit code RC and a line matching REGEX
check() {
  local name="$1" rc_want="$2" pat="$3"; shift 4
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"$T/out.txt" 2>&1; rc=$?
  t1=$(date +%s.%N)
  local dt; dt=$(python -c "print(f'{$t1 - $t0:.1f}')")
  if [ "$rc" != "$rc_want" ]; then
    echo "FAIL  $name: exit $rc, expected $rc_want (${dt} s)"; tail -5 "$T/out.txt" | sed 's/^/      /'; FAILED=1
  elif ! grep -Eq -- "$pat" "$T/out.txt"; then
    echo "FAIL  $name: no line matches /$pat/ (${dt} s)"; tail -5 "$T/out.txt" | sed 's/^/      /'; FAILED=1
  elif grep -q "^Traceback" "$T/out.txt"; then
    echo "FAIL  $name: a Python traceback (${dt} s)"; FAILED=1
  else
    echo "ok    $name (${dt} s)"
  fi
}

S="$ROOT/spaces"
# README: what you can do
check "version"            0 "augur-nas [0-9]"            -- $AUGUR --version
check "analyze alexnet"    0 "input"                      -- $AUGUR analyze "$S/zoo/alexnet.yaml"
check "space mobile"       0 "architectures|candidates"   -- $AUGUR space "$S/mobile.yaml"
check "space --decode -o"  0 "c.yaml"                     -- $AUGUR space "$S/mobile.yaml" --decode 0 -o c.yaml
check "predict decoded"    0 "latency"                    -- $AUGUR predict c.yaml --device tk1-gpu
check "decoded block names" 0 "^s3\.b1\.dw "             -- $AUGUR analyze c.yaml
check "space --decode >"   0 "^# mobile sample 1"         -- sh -c "$AUGUR space '$S/mobile.yaml' --decode 1 > d.yaml && head -1 d.yaml"
check "predict stdout yaml" 0 "latency"                   -- $AUGUR predict d.yaml --device tk1-gpu
check "space --encode"     0 "encoding"                   -- $AUGUR space "$S/mobile.yaml" --encode "s3.depth=3,s3[1].mbconv.kernel=7"
check "predict alexnet"    0 "input shape"                -- $AUGUR predict "$S/zoo/alexnet.yaml" --device tk1-gpu
check "predict nb201 str"  0 "latency"                    -- $AUGUR predict "$NB201" --device tk1-gpu
check "space nb201 encode" 0 "3 3 4 1 3 1"                -- $AUGUR space "$S/nb201.yaml" --encode "$NB201"
check "predict over RAM"   0 "warning: .*2,048 MB"        -- $AUGUR predict "$S/zoo/vgg16.yaml" --device tk1-gpu --batch 16
check "devices"            0 "tk1-gpu"                    -- $AUGUR devices
check "search (README)"    0 "front: "                    -- $AUGUR search "$S/mobile.yaml" --device tk1-gpu --latency 50ms --seed 0 --out s1
check "export onnx"        0 "alexnet.onnx"               -- $AUGUR export "$S/zoo/alexnet.yaml" -o alexnet.onnx
check "search sqlite"      0 "front: "                    -- $AUGUR search "$S/nb201.yaml" --device tk1-gpu --latency 60ms --trials 100 --seed 0 --storage sqlite:///nb.db --out s2
check "study option labels" 0 "^nor_conv_3x3|^skip_connect|^avg_pool|relu_conv_bn|avgpool|identity|zero" -- python -c "import optuna; t = optuna.load_study(study_name='nb201-tk1-gpu', storage='sqlite:///nb.db').trials[0]; print(*t.params.values(), sep='\n')"
check "split (README)"     0 "^best: "                    -- $AUGUR split "$S/zoo/squeezenet1_1.yaml" --device tk1-gpu --server x86-2core-ort --uplink 20Mbps --rtt 30ms
check "split --uplink bad" 2 "not a bandwidth"            -- $AUGUR split "$S/zoo/squeezenet1_1.yaml" --device tk1-gpu --server tk1-cpu --uplink "20 Mbps"
# bad input: one paragraph, exit 2, fast
check "search --out /proc" 2 "cannot write"               -- $AUGUR search "$S/mobile.yaml" --device tk1-gpu --latency 50ms --out /proc/nope
touch afile
check "search --out file"  2 "existing file"              -- $AUGUR search "$S/mobile.yaml" --device tk1-gpu --latency 50ms --out afile
check "predict --threads"  2 "threads"                    -- $AUGUR predict "$S/zoo/alexnet.yaml" --device tk1-gpu --threads 2
check "two --device"       2 "device"                     -- $AUGUR predict "$S/zoo/alexnet.yaml" --device tk1-gpu --device tx1-gpu
check "export -o /proc"    2 "cannot write"               -- $AUGUR export "$S/zoo/alexnet.yaml" -o /proc/nope
check "export -o folder"   2 "is a folder"                -- $AUGUR export "$S/zoo/alexnet.yaml" -o .
# README: from Python (the example, with 1,000 samples)
export S
check "python example"     0 "^\[[0-9.]+\]$"              -- python - <<'PY'
import os
import augur_nas as an

space = an.load_space(os.environ["S"] + "/mobile.yaml")
X = space.sample(1000, seed=0)
tot = an.analyze_batch(space, X)
model = an.load_model(os.environ["S"] + "/zoo/resnet50.prototxt")
print(an.analyze(model)["totals"]["macs"])
oracle = an.Oracle(space, "tk1-gpu")
costs = oracle.evaluate(X)
print(costs["latency_ms"][:3], costs["memory_mb"][:3])
print(an.Oracle(model, "tk1-gpu").evaluate(model.encode())["latency_ms"])
PY
exit $FAILED
