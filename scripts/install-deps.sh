#!/usr/bin/env bash
# Installs the Debian 12 packages kusari needs to build, test and run.
# Idempotent: packages already present are left alone. Installing needs root:
# run it as root, or as a user with sudo (it calls sudo apt-get itself).
#
#   scripts/install-deps.sh            # install what is missing
#   scripts/install-deps.sh --check    # exit 0 if all are present, else 1 (lists them)
set -euo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
CHECK=0
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --check) CHECK=1 ;;
  "") ;;
  *) echo "install-deps: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

PACKAGES=(
  build-essential cmake pkg-config git
  libopenblas-dev            # GEMM
  zlib1g-dev libzip-dev      # .gz datasets, .npz files
  libsqlite3-dev sqlite3     # workspace store
  libcjson-dev               # JSON
  libmicrohttpd-dev          # HTTP servers
  libcurl4-openssl-dev       # HTTP client
  libcairo2-dev              # PNG plots
  libssl-dev                 # sha256 of the blob store (libcrypto)
  libcmocka-dev              # unit tests
  curl wrk                   # HTTP tests of scoring services; serving benchmark
  python3 python3-numpy      # npz round-trips against numpy in the tests
  python3-venv python3-pip  # venvs for the Python package (scripts/python-install.sh) and the framework peers (scripts/python-peers.sh)
  python3-torch              # PyTorch 1.13 (CPU) for platform_python_frameworks and the DDP scaling bench; PyPI's wheel pulls 5 GB of CUDA
  dataset-fashion-mnist      # the reference data set (/usr/share/datasets/fashion-mnist)
  openmpi-bin libopenmpi-dev # MPI: kusari/comm.h's "mpi" communicator, mpirun (optional at build time)
  clang                      # libFuzzer targets of fuzz/ (scripts/fuzz.sh, the fuzzing stage of scripts/test.sh)
  slurm-wlm                  # the slurm compute target's tests: slurmctld, slurmd and the client commands (tests/platform/slurm.sh)
  munge                      # Slurm's authentication daemon, started by tests/platform/slurm.sh with its own key
  libjs-chart.js             # the web UI's charts (kusari server serves /usr/share/javascript/chart.js/chart.min.js)
  chromium                   # the web UI's browser tests (tests/platform/test_ui.sh, headless)
  chromium-driver            # WebDriver for chromium (test_ui.sh)
  python3-selenium           # drives chromium in test_ui.sh (tests/platform/ui_browser.py)
  libpq-dev                  # PostgreSQL store backend (platform/store_pg.c; optional at build time)
  postgresql                 # a real PostgreSQL server for the store tests (tests/platform/pg.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ $CHECK = 1 ]; then
  echo "install-deps: missing ${missing[*]}"
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: these packages are missing and installing them needs root: ${missing[*]}" >&2
    echo "  hint: sudo is not installed: run this script from a root shell (su -), or as root:" >&2
    echo "        apt-get install ${missing[*]}" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
