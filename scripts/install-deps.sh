#!/usr/bin/env bash
# Installs the Debian 12 packages kusari needs to build, test and run.
# Idempotent: packages already present are left alone. Run as root (or with sudo).
set -euo pipefail

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
  dataset-fashion-mnist      # the reference data set (/usr/share/datasets/fashion-mnist)
  openmpi-bin libopenmpi-dev # MPI: kusari/comm.h's "mpi" communicator, mpirun (optional at build time)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
