#!/usr/bin/env bash
# platform_plot: `run plot` and `sweep plot` draw PNGs that read as asked:
# a valid PNG of the asked size, each run's line in its palette colour
# (docs/PLATFORM.md: 1st #1f77b4, 2nd #ff7f0e, 3rd #2ca02c) where its values
# put it, a canceled child dashed, the best child thicker; and clear errors
# (unknown metric or run, bad options, a file that cannot be written).
# The PNGs are decoded here with Python's zlib (no imaging library).
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
mkdir -p "$T/src"
# logs metric y: each value of --ys in order; with --hold FILE, waits for
# FILE to exist after logging
cat > "$T/src/curve.sh" <<'SH'
ys=""; hold=""; level=""
while [ $# -gt 0 ]; do case "$1" in --ys) ys=$2;; --hold) hold=$2;; --level) level=$2;; esac; shift 2; done
[ -n "$level" ] && ys="$level $level $level $level $level"
for y in $ys; do kusari log metric y "$y"; done
if [ -n "$hold" ]; then while [ ! -f "$hold" ]; do sleep 0.1; done; fi
SH
sub() { local id; id="$(submit --experiment plots --source "$T/src" --entry curve.sh -- "$@")"; $K run wait "$id" >/dev/null 2>&1; echo "$id"; }
HI="$(sub --ys "1 1 1 1 1 1 1 1 1 1")"
LO="$(sub --ys "0 0 0 0 0 0 0 0 0 0")"
UP="$(sub --ys "0 1 2 3 4 5 6 7 8 9")"

cat > "$T/png.py" <<'PY'
# png.py FILE: prints "W H" and answers questions about colours in the image
import struct, sys, zlib
def load(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], "bad CRC"
        if kind == b"IHDR": ihdr = struct.unpack(">IIBBBBB", body)
        if kind == b"IDAT": idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    assert depth == 8 and ctype in (2, 6), "unexpected PNG format %s" % (ihdr,)
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w * bpp), "truncated image data"
    rows, prev = [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (1 + w * bpp)], bytearray(raw[y * (1 + w * bpp) + 1:(y + 1) * (1 + w * bpp)])
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows
def near(p, c, tol=10): return all(abs(p[i] - c[i]) <= tol for i in range(3))
COLORS = {"blue": (0x1f, 0x77, 0xb4), "orange": (0xff, 0x7f, 0x0e), "green": (0x2c, 0xa0, 0x2c)}
w, h, rows = load(sys.argv[1])
def pixels(color, x0=0.0, x1=0.7):  # (x, y) of a colour in the columns x0..x1 (fractions; the legend is right)
    c = COLORS[color]
    return [(x, y) for y in range(h) for x in range(int(w * x0), int(w * x1)) if near(rows[y][x], c)]
for q in sys.argv[2:]:
    print(eval(q))
PY
png() { python3 "$T/png.py" "$@" | xargs; }

# --- two runs, one line each in its colour, where its values put it -----------------------
run_ok $K run plot "$HI" "$LO" --metric y -o "$T/two.png" --width 640 --height 400 >/dev/null
assert_eq "640 400" "$(png "$T/two.png" '"%d %d" % (w, h)')" "a valid PNG of the asked size"
assert_eq "True True" "$(png "$T/two.png" 'len(pixels("blue")) > 200' 'len(pixels("orange")) > 200')" "both runs' lines are drawn in their colours"
assert_eq "True True" "$(png "$T/two.png" 'max(y for x, y in pixels("blue")) < h / 2' 'min(y for x, y in pixels("orange")) > h / 2')" \
  "the run at 1 is drawn in the upper half, the run at 0 in the lower half"
# --- a rising curve goes from the lower left to the upper right -----------------------------
run_ok $K run plot "$UP" --metric y -o "$T/up.png" >/dev/null
assert_eq "800 500" "$(png "$T/up.png" '"%d %d" % (w, h)')" "default size 800x500"
assert_eq "True True False False" "$(png "$T/up.png" \
  'any(y > h / 2 for x, y in pixels("blue", 0, 0.35))' 'any(y < h / 2 for x, y in pixels("blue", 0.45, 0.7))' \
  'any(y < h / 3 for x, y in pixels("blue", 0, 0.3))' 'any(y > 2 * h / 3 for x, y in pixels("blue", 0.5, 0.7))')" \
  "a rising curve: low on the left, high on the right, never the other way"
run_ok $K run plot "$UP" "$HI" --metric y --x time -o "$T/time.png" --title "by time" >/dev/null
assert_eq "True" "$(png "$T/time.png" 'len(pixels("blue")) > 20 and len(pixels("orange")) > 20')" "--x time draws too"

# --- errors --------------------------------------------------------------------------------------
expect_fail "has no metric named 'Y'" $K run plot "$HI" --metric Y -o "$T/x.png"
err="$($K run plot "$HI" --metric Y -o "$T/x.png" 2>&1)"
assert_contains "$err" "its metrics: y" "the error lists the run's metrics"
test ! -e "$T/x.png" && ok "no file written on an error" || fail "a file was written despite the error"
expect_fail "no run with id 'nope'" $K run plot "$HI" nope --metric y -o "$T/x.png"
expect_fail "missing --metric" $K run plot "$HI" -o "$T/x.png"
expect_fail "missing -o FILE.png" $K run plot "$HI" --metric y
expect_fail "--x is 'step' or 'time'" $K run plot "$HI" --metric y -o "$T/x.png" --x epoch
expect_fail "--width must be" $K run plot "$HI" --metric y -o "$T/x.png" --width 10
expect_fail "cannot write $T/no/such/dir/x.png" $K run plot "$HI" --metric y -o "$T/no/such/dir/x.png"

# --- sweep plot: a canceled child dashed, the best child thicker -----------------------------------
# grid children in order: level 0.2 (held, then canceled: 5 values then a
# dashed line), 0.5 (completed), 0.8 (completed, the best)
cat > "$T/sweep.json" <<JSON
{"experiment": "plots-sweep", "run": {"source": "$T/src", "entry": "curve.sh", "compute": "cpu", "arguments": []},
 "sampling": {"type": "grid", "space": {"--level": {"choice": [0.2, 0.5, 0.8]}}},
 "primary_metric": {"name": "y", "goal": "maximize"}, "max_concurrent_runs": 3}
JSON
# the first child holds until canceled: give it --hold through the level 0.2 only
cat > "$T/src/wrap.sh" <<SH
case " \$* " in *" 0.2 "*) exec bash curve.sh "\$@" --hold "$T/never";; *) exec bash curve.sh "\$@";; esac
SH
sed -i 's/"entry": "curve.sh"/"entry": "wrap.sh"/' "$T/sweep.json"
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
held=""
for _ in $(seq 1 300); do
  held="$(sql "SELECT r.id FROM runs r JOIN tags g ON g.run_id=r.id AND g.key='--level' AND g.value='0.2'
               WHERE r.parent_id='$SW' AND (SELECT count(*) FROM metrics m WHERE m.run_id=r.id) = 5")"
  [ -n "$held" ] && break
  sleep 0.1
done
[ -n "$held" ] || die "the held child never logged its values"
run_ok $K run cancel "$held" --grace 1 >/dev/null
run_ok $K sweep wait "$SW" --quiet >/dev/null
best="$(run_ok $K sweep best "$SW" | tail -1)"
assert_eq "0.8" "$(jget "$($K run show "$best" --json)" 'j["tags"]["--level"]')" "the best child is the one at 0.8"
out="$(run_ok $K sweep plot "$SW" -o "$T/sweep.png" --width 700 --height 450)"
assert_contains "$out" "3 child runs; best $best" "sweep plot says what it drew"
assert_eq "700 450" "$(png "$T/sweep.png" '"%d %d" % (w, h)')" "sweep plot: a valid PNG of the asked size"
# the row where each colour has most pixels is its line: count the breaks along
# it; a line's thickness is the median count of its pixels per column
breaks='(lambda c: (lambda ps: (lambda row: (lambda xs: sum(1 for a, b in zip(xs, xs[1:]) if b - a > 2))(sorted(x for x, y in ps if y == row)))(max(set(y for x, y in ps), key=lambda r: sum(1 for x, y in ps if y == r))))(pixels(c, 0.15, 0.65)))'
thick='(lambda c: (lambda ps: sorted(sum(1 for x, y in ps if x == col) for col in set(x for x, y in ps))[len(set(x for x, y in ps)) // 2])(pixels(c, 0.3, 0.5)))'
assert_eq "True False False" "$(png "$T/sweep.png" "$breaks(\"blue\") >= 3" "$breaks(\"orange\") > 0" "$breaks(\"green\") > 0")" \
  "the canceled child (blue) is dashed, the others solid"
assert_eq "True True" "$(png "$T/sweep.png" "$thick(\"green\") >= 3" "$thick(\"green\") > $thick(\"orange\")")" \
  "the best child (green) is drawn thicker than a plain one (orange)"
assert_eq "True True True" "$(png "$T/sweep.png" 'max(y for x, y in pixels("green", 0.12, 0.6)) < min(y for x, y in pixels("orange", 0.12, 0.6))' \
  'max(y for x, y in pixels("orange", 0.12, 0.6)) < min(y for x, y in pixels("blue", 0.12, 0.6))' 'len(pixels("blue", 0.12, 0.6)) > 50')" \
  "children drawn at their levels: 0.8 above 0.5 above 0.2"
expect_fail "no sweep with id 'nope'" $K sweep plot nope -o "$T/x.png"
expect_fail "missing -o FILE.png" $K sweep plot "$SW"
for c in "run plot" "sweep plot"; do assert_contains "$($K $c --help)" "usage: kusari $c" "$c --help"; done
finish
