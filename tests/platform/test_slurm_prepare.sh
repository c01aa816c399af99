#!/usr/bin/env bash
# A run's preparation inside its Slurm job, on the node (`kusari __prepare`,
# platform/supervisor.c), on a real single-host Slurm cluster
# (tests/platform/slurm.sh):
#  - the environment's build command runs inside the job (it sees the job's
#    SLURM_JOB_ID), the run is Preparing while the job runs it and Running
#    after; the build cache records miss, then hit for the same code;
#  - a failing build ends the run Failed with the build's reason, the entry
#    never starts; a missing Debian package (checked on the node) likewise;
#  - pip_packages: the virtual environment is made in the job, the entry
#    runs with its python (the path the supervisor named in the argv);
#  - a node that does not see the run's directory (removed while the job
#    waited in Slurm's queue): the batch script's check, exit 97, the run
#    Failed with a clear error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 4 >/dev/null
mkdir -p "$T/src"
cat >"$T/src/show.sh" <<'EOF'
echo "entry ran in job $SLURM_JOB_ID"
cat built.txt
EOF
printf '{"build": "sleep 2; echo \\"built in job $SLURM_JOB_ID on $(hostname)\\" > built.txt"}\n' >"$T/env-build.json"
printf '{"build": "echo building; exit 3"}\n' >"$T/env-fail.json"
printf '{"debian_packages": ["kusari-no-such-package"]}\n' >"$T/env-missing.json"
status() { jget "$("$K" run show "$1" --json)" 'j["status"]'; }
field() { jget "$("$K" run show "$1" --json)" "j.get('$2') if j.get('$2') is not None else ''"; }
tag() { jget "$("$K" run show "$1" --json)" "j['tags'].get('$2', '')"; }
state_of() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p'; }

# ---- the build runs inside the job; Preparing meanwhile ----
id="$(submit -e e --source "$T/src" --entry show.sh --compute s --env "$T/env-build.json")"
seen=""
for ((i = 0; i < 150; i++)); do
  job="$(tag "$id" kusari.slurm_job)"
  st="$(status "$id")"
  if [ -n "$job" ] && [ "$st" = Preparing ] && [ "$(state_of "$job")" = RUNNING ]; then seen=1; break; fi
  case "$st" in Running|Completed|Failed) break;; esac
  sleep 0.1
done
assert_eq 1 "$seen" "the run is Preparing while its Slurm job runs the build"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
assert_eq Completed "$(status "$id")" "then it runs and completes"
job="$(tag "$id" kusari.slurm_job)"
logs="$("$K" run logs "$id")"
assert_contains "$logs" "built in job $job on $(hostname)" "the build command ran inside job $job, on the node"
assert_contains "$logs" "entry ran in job $job" "the entry ran in the same job"
assert_eq miss "$(field "$id" build_cache)" "the build cache missed"
assert_contains "$(cat "$WS/runs/$id/supervisor.log")" "preparing on node" "the supervisor's log has the preparation on the node"
assert_contains "$("$K" run files "$id")" "logs/build.log" "the build's log is among the run's files"
assert_contains "$(sed -n '/__prepare/p' "$WS/runs/$id/logs/slurm_job.sh")" "|| exit" "the batch script prepares before the entry"
id2="$(submit -e e --source "$T/src" --entry show.sh --compute s --env "$T/env-build.json")"
"$K" run wait "$id2" --timeout 60 >/dev/null 2>&1
assert_eq "Completed hit" "$(status "$id2") $(field "$id2" build_cache)" "the same code again: the build cache hit"

# ---- a failing build: Failed with its reason, the entry never ran ----
id="$(submit -e e --source "$T/src" --entry show.sh --compute s --env "$T/env-fail.json")"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
j="$("$K" run show "$id" --json)"
assert_eq Failed "$(jget "$j" 'j["status"]')" "a failing build: Failed"
assert_eq "preparing the run on node $(hostname) failed: the build command 'echo building; exit 3' failed with exit code 3; see logs/build.log" \
  "$(jget "$j" 'j["error"]')" "the error is the build's"
assert_eq "None" "$(jget "$j" 'j.get("exit_code")')" "no exit code: the entry did not run"
logs="$("$K" run logs "$id")"
assert_not_contains "$logs" "entry ran" "the entry never started"
assert_contains "$logs" "kusari: run failed while preparing on node" "the job's log says why"
assert_eq FAILED "$(state_of "$(tag "$id" kusari.slurm_job)")" "Slurm saw the job fail"

# ---- a Debian package missing on the node ----
id="$(submit -e e --source "$T/src" --entry show.sh --compute s --env "$T/env-missing.json")"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
assert_eq Failed "$(status "$id")" "a missing Debian package: Failed"
assert_contains "$(field "$id" error)" "not installed: kusari-no-such-package" "the error names the package"

# ---- pip_packages: the Python environment is made on the node, where the entry's python is ----
if python3 -c "import venv, ensurepip" 2>/dev/null; then
  for v in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
  export PIP_CONFIG_FILE=/dev/null
  mkdir -p "$T/wheels" "$T/py"
  python3 - "$T/wheels" <<'PY'
import base64, hashlib, sys, zipfile
name, ver = "kusaritiny", "0.1"
di = f"{name}-{ver}.dist-info"
files = {f"{name}/__init__.py": b'VALUE = "tiny 0.1"\n',
         f"{di}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n".encode(),
         f"{di}/WHEEL": b"Wheel-Version: 1.0\nGenerator: kusari-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
rec = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}" for p, d in files.items()]
files[f"{di}/RECORD"] = ("\n".join(rec + [f"{di}/RECORD,,"]) + "\n").encode()
with zipfile.ZipFile(f"{sys.argv[1]}/{name}-{ver}-py3-none-any.whl", "w") as z:
    for p, d in files.items():
        z.writestr(p, d)
PY
  printf 'import os, sys, kusaritiny\nprint("tiny:", kusaritiny.VALUE, "prefix:", sys.prefix, "job:", os.environ.get("SLURM_JOB_ID"))\n' >"$T/py/train.py"
  printf '{"pip_packages": ["kusaritiny"], "pip_options": ["--no-index", "--find-links", "%s/wheels"]}\n' "$T" >"$T/env-pip.json"
  id="$(submit -e e --source "$T/py" --entry train.py --compute s --env "$T/env-pip.json")"
  "$K" run wait "$id" --timeout 60 >/dev/null 2>&1
  assert_eq Completed "$(status "$id")" "a Python entry with pip_packages completes"
  job="$(tag "$id" kusari.slurm_job)"
  assert_contains "$("$K" run logs "$id")" "tiny: tiny 0.1 prefix: $WS/envs/venv-" "it runs in the virtual environment made for it, with the package"
  assert_contains "$("$K" run logs "$id")" "job: $job" "inside its job"
  assert_contains "$(cat "$WS/runs/$id/supervisor.log")" "python environment cache miss" "the environment was made during preparation in the job"
else
  echo "note: python3 has no venv/ensurepip: the pip_packages case is not tried"
fi

# ---- `kusari __prepare` (internal) given bad input: a clear error ----
expect_fail "needs the run's directory RUN_DIR" "$K" __prepare
expect_fail "needs the run's directory RUN_DIR" "$K" __prepare relative/dir
mkdir -p "$T/norun"
expect_fail "$T/norun/prepare.json is missing or not what the run's supervisor writes" "$K" __prepare "$T/norun"
assert_eq failed "$(jget "$(cat "$T/norun/prepare.state")" 'j["state"]')" "and it records the failure for the supervisor"
echo '{"workspace": 3}' >"$T/norun/prepare.json"
expect_fail "is missing or not what the run's supervisor writes" "$K" __prepare "$T/norun"

# ---- the shared-filesystem check: exit 97, a clear error ----
blocker="$(sbatch --parsable -c 2 -o /dev/null --wrap 'sleep 60')"
for ((i = 0; i < 100; i++)); do [ "$(state_of "$blocker")" = RUNNING ] && break; sleep 0.1; done
id="$(submit -e e --source "$T/src" --entry show.sh --compute s)"
for ((i = 0; i < 100; i++)); do [ -n "$(tag "$id" kusari.slurm_job)" ] && break; sleep 0.1; done
job="$(tag "$id" kusari.slurm_job)"
assert_eq PENDING "$(state_of "$job")" "the run's job waits behind a job that holds the node"
rm -rf "$WS/runs/$id/wd"   # what a node without the workspace's filesystem would see
scancel "$blocker"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
j="$("$K" run show "$id" --json)"
assert_eq "Failed 97" "$(jget "$j" 'j["status"] + " " + str(j.get("exit_code"))')" "a node without the run's directory: Failed, exit code 97"
assert_contains "$(jget "$j" 'j["error"]')" "is not visible on the Slurm node that took the job (exit code 97): nodes must see the workspace at the same path (a shared filesystem)" \
  "the error says why"
assert_contains "$("$K" run logs "$id")" "is not visible on node" "the batch script's message is in the log"

finish
