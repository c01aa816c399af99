# tests/integration/blas_env.sh — sourced by the example tests: unless the
# caller chose one, use the OpenBLAS kernel set that the platform gives runs
# (`kusari --version` names it when Debian's OpenBLAS does not know the CPU),
# so the examples compute what a tracked run computes, at its speed. CTest
# passes the kusari program as KUSARI_CLI; without it OpenBLAS picks alone.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -n "${KUSARI_CLI:-}" ] && [ -x "$KUSARI_CLI" ]; then
  ks_core=$("$KUSARI_CLI" --version | sed -n 's/.*runs get OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p')
  if [ -n "$ks_core" ]; then
    export OPENBLAS_CORETYPE=$ks_core
    echo "OPENBLAS_CORETYPE=$ks_core (as runs get it)"
  fi
fi
