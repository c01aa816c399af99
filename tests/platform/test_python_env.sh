#!/usr/bin/env bash
# platform_python_env: which Python a run uses, and its pip_packages.
# - A .py entry runs with python3 from the submitter's PATH (a fake python3
#   put first on PATH at submit is the one that runs), resolved at submit and
#   recorded in the run's environment, or with the environment file's
#   "interpreter"; no python3, or a bad interpreter, fails the submit clearly.
# - "pip_packages" are installed into a virtual environment cached per
#   environment (offline: a wheel built here, installed with --no-index and
#   --find-links); the next run reuses it without installing again; two runs
#   of a new environment at once install it once (a lock); the venv sees the
#   system's site-packages only with "system_site_packages": true; a failed
#   install fails the run and leaves no half-made environment.
. "$(dirname "$0")/lib.sh"
REALPY="$(command -v python3)" || die "python3 is needed by this test"
"$REALPY" -c "import venv, ensurepip" 2>/dev/null || { echo "skip: $REALPY has no venv/ensurepip"; exit 77; }
run_ok $K compute create cpu --max-nodes 2 >/dev/null
# pip reads PIP_* variables and config files: none of this machine's
for v in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export PIP_CONFIG_FILE=/dev/null

# --- a tiny wheel (a zip: the module, METADATA, WHEEL, RECORD) ---------------------------------
mkdir -p "$T/wheels"
"$REALPY" - "$T/wheels" <<'PY'
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
mkdir -p "$T/py"
cat > "$T/py/train.py" <<'PY'
import sys, sysconfig
try:
    import kusaritiny
    print("tiny:", kusaritiny.VALUE)
except ImportError:
    print("tiny: missing")
print("prefix:", sys.prefix)
base = sysconfig.get_path("purelib", vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
print("system-site:", base in sys.path)
PY
env_file() {  # env_file NAME EXTRA_JSON
  cat > "$T/$1.json" <<JSON
{"pip_packages": ["kusaritiny"], "pip_options": ["--no-index", "--find-links", "$T/wheels"]$2}
JSON
}
env_file env ''
log_of() { run_ok $K run logs "$1"; }
blog_of() { run_ok $K run logs "$1" --build; }

# --- pip_packages: installed once, then reused ---------------------------------------------------
id1="$(submit --experiment py --source "$T/py" --entry train.py --env "$T/env.json")"
$K run wait "$id1" >/dev/null || fail "run with pip_packages did not complete: $(log_of "$id1"; blog_of "$id1")"
assert_contains "$(log_of "$id1")" "tiny: tiny 0.1" "the entry imports the package installed from the local wheel"
assert_contains "$(log_of "$id1")" "prefix: $WS/envs/venv-" "it runs in the environment's virtual environment"
assert_contains "$(log_of "$id1")" "system-site: False" "which does not see the system's site-packages by default"
b1="$(blog_of "$id1")"
assert_contains "$b1" "python environment cache miss" "the first run builds the environment"
assert_contains "$b1" "Successfully installed kusaritiny-0.1" "pip installed the wheel (offline, --no-index)"
ready="$(ls "$WS"/envs/venv-*/.kusari-ready)"
ino1="$(stat -c %i "$ready")"
id2="$(submit --experiment py --source "$T/py" --entry train.py --env "$T/env.json")"
run_ok $K run wait "$id2" >/dev/null
b2="$(blog_of "$id2")"
assert_contains "$b2" "python environment cache hit" "the second run reuses the environment"
assert_not_contains "$b2" "installing pip_packages" "without installing anything again"
assert_eq "$ino1" "$(stat -c %i "$ready")" "the environment on disk is the same one (not rebuilt)"
assert_contains "$(log_of "$id2")" "tiny: tiny 0.1" "and the package is there"
# a shell entry of the same environment finds the venv's python3 first on PATH
printf 'python3 -c "import kusaritiny, sys; print(\\"sh sees\\", kusaritiny.VALUE, sys.prefix == \\"$VIRTUAL_ENV\\")"\n' > "$T/py/run.sh"
id3="$(submit --experiment py --source "$T/py" --entry run.sh --env "$T/env.json")"
run_ok $K run wait "$id3" >/dev/null
assert_contains "$(log_of "$id3")" "sh sees tiny 0.1 True" "a shell entry gets the venv's python3 and VIRTUAL_ENV"
assert_eq 1 "$(ls -d "$WS"/envs/venv-* | wc -l)" "one virtual environment for the three runs"

# --- two runs of a new environment at once: one install (lock) -----------------------------------
# (its interpreter says it has no usable pip, like a Python without python3-pip:
# the environment then gets its own pip from ensurepip)
mkdir -p "$T/nopip"
printf '#!/bin/sh\ncase "$2" in *"import sys, pip"*) exit 1;; esac\nexec "%s" "$@"\n' "$REALPY" > "$T/nopip/python3"
chmod +x "$T/nopip/python3"
env_file sys ', "system_site_packages": true, "interpreter": "'"$T/nopip/python3"'"'
a="$(submit --experiment py --source "$T/py" --entry train.py --env "$T/sys.json")"
b="$(submit --experiment py --source "$T/py" --entry train.py --env "$T/sys.json")"
run_ok $K run wait "$a" >/dev/null
run_ok $K run wait "$b" >/dev/null
assert_eq 1 "$( (blog_of "$a"; blog_of "$b") | grep -c "Successfully installed kusaritiny")" \
  "two concurrent runs of a new environment install it once"
assert_contains "$(log_of "$a")$(log_of "$b")" "tiny: tiny 0.1" "both import the package"
assert_contains "$(log_of "$b")" "system-site: True" "system_site_packages: true lets the venv see the system's packages"
assert_contains "$(blog_of "$a")$(blog_of "$b")" "has no pip that can install into another Python: adding pip to the environment" \
  "an interpreter without a usable pip: the environment gets pip from ensurepip (offline)"
assert_eq 2 "$(ls -d "$WS"/envs/venv-* | wc -l)" "a second environment, a second venv"

# --- a failed install fails the run, and leaves nothing half made -------------------------------
cat > "$T/bad.json" <<JSON
{"pip_packages": ["kusari-no-such-package"], "pip_options": ["--no-index", "--find-links", "$T/wheels"]}
JSON
id="$(submit --experiment py --source "$T/py" --entry train.py --env "$T/bad.json")"
$K run wait "$id" >/dev/null 2>&1 && fail "a run whose pip_packages cannot be installed completed"
assert_contains "$(jget "$(run_ok $K run show "$id" --json)" 'j["error"]')" "installing the environment's pip_packages failed (pip exited with code 1); see logs/build.log" \
  "the run fails and says why"
assert_eq 2 "$(ls -d "$WS"/envs/venv-* | wc -l)" "no half-made environment is left"

# --- the interpreter: python3 from the submitter's PATH -----------------------------------------
mkdir -p "$T/fakebin" "$T/nopy"
printf '#!/bin/sh\necho "fake python3 was used"\nexec "%s" "$@"\n' "$REALPY" > "$T/fakebin/python3"
chmod +x "$T/fakebin/python3"
id="$(PATH="$T/fakebin:$PATH" $K run submit --experiment py --source "$T/py" --entry train.py | tail -1)"
run_ok $K run wait "$id" >/dev/null
assert_contains "$(log_of "$id")" "fake python3 was used" "a .py entry runs with the python3 first on the submitter's PATH"
assert_contains "$(sql "SELECT env_json FROM runs WHERE id='$id'")" "\"interpreter\":\"$T/fakebin/python3\"" \
  "the interpreter is resolved at submit and recorded with the run"
assert_contains "$(cat "$WS/runs/$id/supervisor.log")" "python: $T/fakebin/python3" "the supervisor's log names it"
id="$(submit --experiment py --source "$T/py" --entry train.py)"
run_ok $K run wait "$id" >/dev/null
assert_not_contains "$(log_of "$id")" "fake python3" "without it on PATH, the usual python3"
# the environment file's interpreter wins
cp "$T/fakebin/python3" "$T/nopy/mypython"
echo "{\"interpreter\": \"$T/nopy/mypython\"}" > "$T/interp.json"
id="$(submit --experiment py --source "$T/py" --entry train.py --env "$T/interp.json")"
run_ok $K run wait "$id" >/dev/null
assert_contains "$(log_of "$id")" "fake python3 was used" "the environment file's interpreter is used"
n="$(sql "SELECT count(*) FROM runs")"
echo '{"interpreter": "kusari-no-such-python"}' > "$T/nointerp.json"
expect_fail "the environment's interpreter 'kusari-no-such-python' is not an executable file on your PATH" \
  $K run submit --experiment py --source "$T/py" --entry train.py --env "$T/nointerp.json"
expect_fail "there is no python3 on your PATH for the Python entry" env PATH="$T/nopy" $K run submit --experiment py --source "$T/py" --entry train.py
echo '{"pip_packages": ["-e ."]}' > "$T/e1.json"
expect_fail "pip_packages: '-e .' is not a package" $K run submit --experiment py --source "$T/py" --entry train.py --env "$T/e1.json"
echo '{"pip_options": [3]}' > "$T/e2.json"
expect_fail "pip_options: '(not a string)' is not an option" $K run submit --experiment py --source "$T/py" --entry train.py --env "$T/e2.json"
echo '{"system_site_packages": "yes"}' > "$T/e3.json"
expect_fail "field 'system_site_packages' has the wrong type" $K run submit --experiment py --source "$T/py" --entry train.py --env "$T/e3.json"
assert_eq "$n" "$(sql "SELECT count(*) FROM runs")" "a refused submit records nothing"
finish
