#!/usr/bin/env bash
# libkusari installs like a C library: `cmake --install` into a fresh prefix,
# then the example's own Makefile (pkg-config only, as a user would copy it)
# builds train_mnist outside the tree, and the program runs.
set -euo pipefail
SRC=$1
BIN=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$BIN" --prefix "$tmp/prefix" >/dev/null
for f in include/kusari/kusari.h include/kusari/functions.h lib/pkgconfig/kusari.pc; do
  [ -e "$tmp/prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
ls "$tmp/prefix"/lib/libkusari.so* "$tmp/prefix"/lib/libkusari.a >/dev/null
cp -r "$SRC/examples/mnist" "$tmp/mnist"
rm -f "$tmp/mnist/train_mnist"
PKG_CONFIG_LIBDIR="$tmp/prefix/lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig" \
  make -C "$tmp/mnist" CFLAGS="-O2 -Wall -Wextra -Werror"
export LD_LIBRARY_PATH="$tmp/prefix/lib"
# (outputs are saved, not piped into grep -q: grep's early exit would kill the
# writer with SIGPIPE, which pipefail turns into a failure now and then)
"$tmp/mnist/train_mnist" --help > "$tmp/help"
grep -q -- '--batchsize' "$tmp/help"
# the library must come from the install prefix
ldd "$tmp/mnist/train_mnist" > "$tmp/ldd"
grep -q "$tmp/prefix/lib/libkusari.so" "$tmp/ldd" || { echo "FAIL: not linked against the installed library"; cat "$tmp/ldd"; exit 1; }
# the static library and pkg-config's --static flags link too
PKG_CONFIG_LIBDIR="$tmp/prefix/lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig" sh -c \
  'cc -O2 -o "$0/static_train" "$0/mnist/train_mnist.c" $(pkg-config --cflags kusari) "$0/prefix/lib/libkusari.a" $(pkg-config --libs-only-l --static kusari | sed "s/-lkusari//")' "$tmp"
"$tmp/static_train" --help >/dev/null
# a Makefile without a findable libkusari fails with a clear message
# (PKG_CONFIG_LIBDIR replaces pkg-config's default search path, so a
# libkusari installed system-wide is not found either)
if PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= make -C "$tmp/mnist" -B 2>"$tmp/err"; then
  echo "FAIL: make succeeded without libkusari"; exit 1
fi
grep -q "libkusari not found by pkg-config" "$tmp/err"
echo "PASS"
