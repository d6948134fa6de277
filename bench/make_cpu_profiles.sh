#!/usr/bin/env bash
# Produce the shipped CPU profile of this machine (1 thread, batch 1) for the built-in spaces, fit
# its calibrated latency predictors and print the accuracy / throughput figures.
#
# Run it on a QUIET machine: no tests, Ray workers or builds at the same time (latency measurement
# is disturbed by other processes; the script refuses to start when the load average says the
# machine is busy - set FORCE=1 to override). Resumable: if interrupted, run it again.
#
#   bench/make_cpu_profiles.sh                  # all three spaces (about 20 minutes)
#   SPACES="seq1d" bench/make_cpu_profiles.sh   # a subset
#   DEVICE=my-name bench/make_cpu_profiles.sh   # another profile name (default cpu-<model>-1t-b1)
#
# Writes hardware_profiles/<device>/ (profile.yaml, blocks.csv, archs.csv) and
# predictors/<device>-<space>.json at the top of the checkout, and bench/latency_predictor_cpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."

SPACES=${SPACES:-"hybrid ofa-mbv3 seq1d"}
CALIB=${CALIB:-100}      # end-to-end archs the predictor is fitted on (the target allows at most 100)
HOLDOUT=${HOLDOUT:-200}  # held-out end-to-end archs for the accuracy figures
PY=${PYTHON:-python}
EXTRA=${EXTRA:-}        # extra `nas profile` flags, e.g. EXTRA="--quick --resolution 1024" for a dry run
OUT_JSON=${OUT_JSON:-bench/latency_predictor_cpu.json}

load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if [ "${FORCE:-0}" != "1" ] && awk -v l="$load" 'BEGIN { exit !(l > 0.7) }'; then
  echo "load average $load: the machine is busy; measure when it is quiet (FORCE=1 to override)" >&2
  exit 1
fi

# one BLAS/OpenMP thread everywhere (the protocol pins torch to 1 thread as well); pin the process
# to one core when taskset exists, so the scheduler does not migrate the measuring thread
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PIN=()
if command -v taskset >/dev/null 2>&1; then
  ncpu=$(nproc)
  PIN=(taskset -c "$((ncpu - 1))")
fi

DEVICE=${DEVICE:-$($PY -c 'from nas.profile.run import ProfileSettings, device_name; print(device_name(ProfileSettings(spaces=[])))')}
echo "profile: $DEVICE; spaces: $SPACES; calib $CALIB, holdout $HOLDOUT; load average $load"

space_args=()
for s in $SPACES; do space_args+=(--space "$s"); done

# 1. measure (block table with the cheap block protocol, then calib + holdout archs with the full one)
"${PIN[@]}" $PY -m nas.cli.main profile "${space_args[@]}" --device "$DEVICE" --threads 1 --batch 1 \
  --calib "$CALIB" --holdout "$HOLDOUT" $EXTRA \
  --description "this machine's CPU, 1 thread, batch 1, torch-cpu fp32, deploy (fused) modules; made by bench/make_cpu_profiles.sh"

# 2. fit the calibrated predictors on the calib archs + block table; held-out metrics go in the JSON
$PY -m nas.cli.main predictor fit --device "$DEVICE" "${space_args[@]}" --kind calibrated

# 3. figures: accuracy of every kind, learning curve, throughput
"${PIN[@]}" $PY bench/latency_predictor.py --device "$DEVICE" --json "$OUT_JSON"
$PY -m nas.cli.main profile show "$DEVICE"
