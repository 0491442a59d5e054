#!/bin/sh
# `make run` of two versions side by side, each in a fresh clone of this repository:
#   benchmarks/make_run_ab.sh BASE [ROUNDS] [FOLDER]
# clones BASE and HEAD into FOLDER (default: a new temporary folder), runs `make run` once in
# each (it installs), then ROUNDS rounds (default 6) in the order ABBA, timing each run with
# /usr/bin/time; prints every run and the totals: wall and CPU (user + sys), and HEAD's
# ratio to BASE. The two run in turn, so that a shared machine's slow spells fall on both.
set -e
base=$1 rounds=${2:-6} folder=${3:-$(mktemp -d)}
repo=$(git rev-parse --show-toplevel)
for name in base head; do
  [ -d "$folder/$name" ] || git clone -q "$repo" "$folder/$name"
  git -C "$folder/$name" fetch -q "$repo" HEAD  # a folder reused: HEAD may be newer
done
git -C "$folder/base" checkout -q "$base"
git -C "$folder/head" checkout -q "$(git -C "$repo" rev-parse HEAD)"
for name in base head; do make -s -C "$folder/$name" run >/dev/null; done
timed() { /usr/bin/time -f "$1 %e %U %S" make -s -C "$folder/$1" run 2>&1 >/dev/null | tail -n 1; }
i=0
while [ $i -lt "$rounds" ]; do
  if [ $((i % 2)) = 0 ]; then timed base; timed head; else timed head; timed base; fi
  i=$((i + 1))
done | awk '{ print; wall[$1] += $2; cpu[$1] += $3 + $4 }
  END { printf "wall: base %.1f s, head %.1f s, %.3fx; cpu: base %.1f s, head %.1f s, %.3fx\n",
        wall["base"], wall["head"], wall["head"] / wall["base"],
        cpu["base"], cpu["head"], cpu["head"] / cpu["base"] }'
