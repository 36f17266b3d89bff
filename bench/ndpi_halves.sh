#!/usr/bin/env bash
# Splits the nDPI corpus's captures into two disjoint halves, by a hash of each file's name (stable across
# machines): bench/work/ndpi-halves/{public,private}/, each a folder of links to the captures. The nDPI corpus
# is public; here one half plays the *public* corpus an organisation may pre-train on, the other its *private*
# traffic. A capture lies in one half only, so no flow is in both.
#
#   bash bench/ndpi_halves.sh && privpkt experiment bench/dp_ndpi_public.toml --out bench/work/dp-ndpi-public
set -euo pipefail
cd "$(dirname "$0")/.."
src=../shared/data/ndpi/pcap
[ -d "$src" ] || { echo "SKIPPED: $src not found (the nDPI corpus ships beside the repository)"; exit 0; }
out=bench/work/ndpi-halves
rm -rf "$out" && mkdir -p "$out/public" "$out/private"
src_abs=$(cd "$src" && pwd)
python3 - "$src_abs" "$out" <<'PY'
import hashlib, os, sys
src, out = sys.argv[1], sys.argv[2]
n = {"public": 0, "private": 0}
for name in sorted(os.listdir(src)):
    half = "public" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "private"
    os.symlink(os.path.join(src, name), os.path.join(out, half, name))
    n[half] += 1
print(f"{n['public']} public and {n['private']} private captures in {out}")
PY
