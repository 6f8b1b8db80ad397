#!/bin/bash
# GPU screening (2026-12-04): on a GPU machine, 200 phantoms made in parallel, a 30-step smoke
# test, then 5 trainings at once on one GPU, each fitted to the same wall-clock budget (W min);
# the checkpoints and logs go to $OUT. Needs .gpu/ from scripts/device/prepare.sh. Locally, to
# check it: PY=.venv/bin/python DEVICE=cpu A=1 B=1 W=0.3 DEADLINE=400 bash scripts/device/screen.sh
T0=$(date +%s)
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; A=${A:-5}; B=${B:-10}   # phantoms per chunk
DEADLINE=${DEADLINE:-560}; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
L=/tmp/logs; R=/tmp/r; D=/tmp/d; mkdir -p $L $R $D
el() { echo $(( $(date +%s) - T0 )); }
if [ -d .gpu/whl ] && [ "$PY" = python3 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else export PYTHONPATH=$PWD; fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -E 'Model name|^CPU\(s\)';
  $PY -c "import torch,numpy,monai;print('torch',torch.__version__,'numpy',numpy.__version__,'monai',monai.__version__,'cuda',torch.cuda.is_available())"; } > $L/env.txt 2>&1
cat $L/env.txt
# smoke: 30 steps on the MRI sample alone, on the device, while the phantoms are made
OMP_NUM_THREADS=2 $PY scripts/device/train_cached_text.py train --studies .gpu/mri --out $R/smoke.pt --config configs/default.yaml \
  --steps 30 --val-percent 0 --seed 1 --device $DEVICE > $L/smoke.log 2>&1 &
SMOKE=$!
gen() { OMP_NUM_THREADS=1 $PY -m lib.cli phantoms --out $1 --count $2 --start $3 --seed 1000 --hard-fraction $4 > $1.log 2>&1; }
for s in 0 5 10 15 20 25 30 35; do gen $D/acc_$s ${A:-5} $s 0.4 & done
for s in 0 10 20 30 40 50 60 70; do gen $D/h08_$s ${B:-10} $s 0.8 & done
for s in 80 90 100 110 120 130 140 150; do gen $D/ex2_$s ${B:-10} $s 0.4 & done
wait
echo "phantoms and smoke done at $(el) s"; tr '\r' '\n' < $L/smoke.log | grep -v '^$' | tail -4
ls -d $D/*/ | wc -l; du -sh $D
if ! grep -q '"steps": 30' $L/smoke.log; then echo SMOKE FAILED; cat $L/smoke.log | tail -30; tar czf $OUT/logs.tgz -C /tmp logs d/acc_0.log; exit 4; fi
W=${W:-$(python3 -c "print(round(($DEADLINE - $(el) - 140) / 60, 2))")}
echo "training budget W=$W min"
run() { name=$1; shift
  OMP_NUM_THREADS=3 $PY scripts/device/train_cached_text.py train --out $R/$name.pt --val-percent 0 --max-minutes $W --device $DEVICE "$@" > $L/$name.log 2>&1 & }
ACC="$(ls -d $D/acc_*/) .gpu/mri"
run ref1 --studies $ACC --config configs/default.yaml --steps 13585 --seed 1
run ref2 --studies $ACC --config configs/default.yaml --steps 13585 --seed 2
run ref3 --studies $ACC --config configs/default.yaml --steps 13585 --seed 3
run long1 --studies $ACC --config configs/default.yaml --steps 60000 --seed 1
run hr160 --studies $(ls -d $D/h08_*/ $D/ex2_*/) .gpu/mri --config configs/absent_ramp.yaml --steps 13585 --seed 1
( sleep 150; nvidia-smi dmon -c 8 -s u > $L/dmon.txt 2>&1; nvidia-smi > $L/smi.txt 2>&1 ) &
while [ $(el) -lt $DEADLINE ] && pgrep -f "gpu_train.py train --out $R/[a-z]" > /dev/null; do sleep 5; done
echo "trainings done at $(el) s"
for f in $L/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -E 'saved|steps/s|Error|error|training on' | tail -3; done
cp $R/ref1.pt $R/ref2.pt $R/ref3.pt $R/long1.pt $R/hr160.pt $OUT/ 2>/dev/null
tar czf $OUT/logs.tgz -C /tmp logs
ls -la $OUT
