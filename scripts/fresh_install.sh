#!/usr/bin/env bash
# The README's install lines in a fresh virtual environment, timed: what a new user on a CPU machine
# runs. Prints the size of the venv, each step's seconds, and checks that the studio answers.
#
#   bash scripts/fresh_install.sh [--cpu-index]
#
# --cpu-index installs torch from PyTorch's CPU index as the README says for a machine without a
# GPU; without it `pip install torch==2.13.0` is used (on a machine whose pip finds a CPU wheel
# locally, e.g. the project's CI machine, that is the same build without the extra index).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$(mktemp -d /tmp/animatrix-venv.XXXXXX)
trap 'rm -rf "$VENV"; [ -n "${APP_PID:-}" ] && kill "$APP_PID" 2>/dev/null || true' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1

step() {  # step NAME COMMAND...: run, time, one line
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$VENV.log" 2>&1 || { echo "FAILED: $name"; tail -20 "$VENV.log"; exit 1; }
  printf '| %s | %d s | %s |\n' "$name" $((SECONDS - t0)) "$(load)"
}

load() {  # the 1/5/15-minute load average: timings on shared cores mean little without it
  cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime | sed 's/.*average[s]*: //'
}

python3 -m venv "$VENV"
PY="$VENV/bin/python"
echo "| step | time | load average after it (1/5/15 min) |"
echo "|---|---|---|"
if [ "${1:-}" = "--cpu-index" ]; then
  step "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" \
    "$PY" -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
else
  step "pip install torch==2.13.0" "$PY" -m pip install -q torch==2.13.0
fi
step "pip install -r requirements.txt" "$PY" -m pip install -q -r requirements.txt
step "pip install -r requirements-dev.txt" "$PY" -m pip install -q -r requirements-dev.txt
step "pip install -e ." "$PY" -m pip install -q --no-deps -e .
# One OpenCV: two builds share the cv2 folder and overwrite each other's files.
OPENCV=$("$PY" -m pip list 2>/dev/null | grep -i '^opencv' || true)
[ "$(printf '%s\n' "$OPENCV" | grep -c .)" = 1 ] || { echo "FAILED: expected one OpenCV build, got: $OPENCV"; exit 1; }
# The installed command from another folder: a preview clip end to end.
DATA=$(mktemp -d)
step "animatrix generate --model preview (from /tmp)" bash -c \
  "cd /tmp && '$VENV/bin/animatrix' --data-dir '$DATA' generate --model preview --narrative 'a fox runs' --frames 9 --width 64 --height 64 --steps 2"
# python app.py answers on its port.
PORT=$(( 20000 + RANDOM % 20000 ))
t0=$SECONDS
"$PY" app.py --data-dir "$DATA" --default-model preview --port "$PORT" > "$VENV.app.log" 2>&1 &
APP_PID=$!
until curl -fsS "http://127.0.0.1:$PORT/" > /dev/null 2>&1; do
  if ! kill -0 "$APP_PID" 2>/dev/null || [ $((SECONDS - t0)) -gt 180 ]; then echo "FAILED: python app.py"; tail -20 "$VENV.app.log"; exit 1; fi
  sleep 1
done
printf '| python app.py answers on http://127.0.0.1:%s | %d s | %s |\n' "$PORT" $((SECONDS - t0)) "$(load)"
echo
echo "venv: $(du -sh "$VENV" | cut -f1) · python $("$PY" -c 'import sys; print(sys.version.split()[0])') · torch $("$PY" -c 'import torch; print(torch.__version__)')"
rm -rf "$DATA"
