#!/usr/bin/env python3
"""Check that a privpkt Deep Packet dataset and the Python reference hold the same vectors.

    python bench/compare_vectors.py PRIVPKT_DATASET_DIR REFERENCE_OUT_DIR [--max-report N]
                                    [--json-out FILE]

The criterion: for every (capture file, flow id) both sides hold the same multiset of 1500-byte
vectors with the same label. privpkt numbers flows per capture in order of creation and so does
the reference, so the comparison is first done row by row in emission order per (capture, flow);
only where that fails is the multiset compared (same vectors, different order) and, where flow ids
disagree, the vectors of the whole capture (flow logic differs but vectors agree).

Run privpkt with no class map, no caps (`--max-per-flow 0`, no --max-per-class/--balance): it
then keeps every sample (split fractions only say which split each one lands in).

Exit status: 0 all equal, 1 mismatches, 2 unusable input.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from collections import defaultdict

import numpy as np

VECTOR_LEN = 1500
BLOCK = 65536
I64 = 1 << 63


class Side:
    """Vectors (mmap'd .npy files seen as one array), per-row metadata and capture names."""

    def __init__(self, name, arrays, captures, cap, flow, label, direction, ts, l4):
        self.name = name
        self.arrays = arrays
        self.starts = np.cumsum([0] + [a.shape[0] for a in arrays])
        self.n = int(self.starts[-1])
        self.captures = captures
        self.cap = cap
        self.flow = flow
        self.label = label
        self.direction = direction
        self.ts = ts
        self.l4 = l4

    def rows(self, a, b):
        """Vectors a..b (global row numbers) as one (b - a, 1500) array."""
        parts = []
        i = int(np.searchsorted(self.starts, a, side="right")) - 1
        while a < b:
            s0, s1 = int(self.starts[i]), int(self.starts[i + 1])
            take = min(b, s1) - a
            if take > 0:
                parts.append(np.asarray(self.arrays[i][a - s0:a - s0 + take]))
                a += take
            i += 1
        if not parts:
            return np.zeros((0, VECTOR_LEN), np.uint8)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def row(self, i):
        return self.rows(i, i + 1)[0]


def fail(msg):
    print(f"compare_vectors: {msg}", file=sys.stderr)
    sys.exit(2)


def read_index(path, has_split):
    cap, flow, label, direction, ts, l4 = [], [], [], [], [], []
    with open(path, newline="") as fh:
        rdr = csv.reader(fh)
        header = next(rdr)
        col = {h: i for i, h in enumerate(header)}
        for need in ("sample", "capture", "flow", "direction", "timestamp_ns", "label", "l4"):
            if need not in col:
                fail(f"{path}: no column `{need}` (columns: {', '.join(header)})")
        ci, fi, li, di, ti, l4i, si = (col["capture"], col["flow"], col["label"], col["direction"],
                                       col["timestamp_ns"], col["l4"], col["sample"])
        for k, r in enumerate(rdr):
            if int(r[si]) != k:
                fail(f"{path}: row {k + 2}: sample {r[si]} where {k} was expected (rows out of order)")
            cap.append(int(r[ci]))
            flow.append(int(r[fi]))
            label.append(r[li])
            direction.append(r[di])
            t = int(r[ti])
            ts.append(t if -I64 <= t < I64 else (I64 - 1 if t > 0 else -I64))  # dpkt decoder: any int
            l4.append(r[l4i])
    return (np.array(cap, np.int64), np.array(flow, np.int64), label, direction,
            np.array(ts, np.int64), l4)


def load_privpkt(d):
    mpath = os.path.join(d, "manifest.json")
    if not os.path.exists(mpath):
        fail(f"{d}: no manifest.json (not a privpkt dataset, or an incomplete one)")
    with open(mpath) as fh:
        m = json.load(fh)
    st = m.get("storage", {})
    if st.get("layout") != "dense" or list(st.get("row_shape", [])) != [VECTOR_LEN]:
        fail(f"{d}: not a Deep Packet dataset (storage {st.get('layout')}, row shape {st.get('row_shape')})")
    arrays = []
    for sh in st["shards"]:
        a = np.load(os.path.join(d, sh["file"]), mmap_mode="r")
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != VECTOR_LEN or a.shape[0] != sh["rows"]:
            fail(f"{d}/{sh['file']}: shape {a.shape} dtype {a.dtype}, manifest says {sh['rows']} rows")
        arrays.append(a)
    captures = [c["path"] for c in m["captures"]]
    cap, flow, label, direction, ts, l4 = read_index(os.path.join(d, "index.csv"), True)
    side = Side("privpkt", arrays, captures, cap, flow, label, direction, ts, l4)
    if side.n != len(cap):
        fail(f"{d}: {side.n} vectors but {len(cap)} index rows")
    bal = m.get("balance") or {}
    notes = []
    if m.get("labels", {}).get("class_map"):
        notes.append("privpkt ran with a class map: classes it dropped are missing on its side")
    if bal.get("max_per_class") is not None or bal.get("balance"):
        notes.append("privpkt ran with undersampling (--max-per-class/--balance): samples are missing on its side")
    mpf = m.get("extract", {}).get("max_per_flow")
    return side, notes, mpf


def load_reference(d):
    spath = os.path.join(d, "summary.json")
    if not os.path.exists(spath):
        fail(f"{d}: no summary.json (not a deeppacket_ref.py output directory)")
    with open(spath) as fh:
        s = json.load(fh)
    a = np.load(os.path.join(d, "vectors.npy"), mmap_mode="r")
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != VECTOR_LEN:
        fail(f"{d}/vectors.npy: shape {a.shape} dtype {a.dtype}")
    captures = [c["path"] for c in s["captures"]]
    cap, flow, label, direction, ts, l4 = read_index(os.path.join(d, "index.csv"), False)
    side = Side("reference", [a], captures, cap, flow, label, direction, ts, l4)
    if side.n != len(cap):
        fail(f"{d}: {side.n} vectors but {len(cap)} index rows")
    return side, s


def capture_keys(a, b):
    """Name captures by file name, or by full path where file names repeat."""
    dup = len(set(os.path.basename(p) for p in a.captures)) != len(a.captures) or \
        len(set(os.path.basename(p) for p in b.captures)) != len(b.captures)
    if dup:
        return [os.path.normpath(p) for p in a.captures], [os.path.normpath(p) for p in b.captures]
    return [os.path.basename(p) for p in a.captures], [os.path.basename(p) for p in b.captures]


def ranges(cap, ncap):
    """Rows of each capture: (start, stop) when rows are grouped by capture (they are)."""
    if len(cap) and np.any(np.diff(cap) < 0):
        return None
    starts = np.searchsorted(cap, np.arange(ncap), side="left")
    stops = np.searchsorted(cap, np.arange(ncap), side="right")
    return list(zip(starts.tolist(), stops.tolist()))


def field_at(vec, off, l4):
    """Name the header field at byte `off` of a Deep Packet vector (UDP padded to 20 bytes)."""
    ver = int(vec[0]) >> 4
    if ver == 4:
        ihl = (int(vec[0]) & 0x0F) * 4
        names = {0: "IPv4 version/IHL", 1: "IPv4 DSCP/ECN", 2: "IPv4 total length", 3: "IPv4 total length",
                 4: "IPv4 identification", 5: "IPv4 identification", 6: "IPv4 flags/fragment offset",
                 7: "IPv4 flags/fragment offset", 8: "IPv4 TTL", 9: "IPv4 protocol",
                 10: "IPv4 header checksum", 11: "IPv4 header checksum"}
        if off in names:
            return names[off]
        if 12 <= off < 16:
            return "IPv4 source address"
        if 16 <= off < 20:
            return "IPv4 destination address"
        if off < ihl:
            return "IPv4 options"
        l4off = ihl
    elif ver == 6:
        if off == 0:
            return "IPv6 version/traffic class"
        if off == 1:
            return "IPv6 traffic class/flow label"
        if off in (2, 3):
            return "IPv6 flow label"
        if off in (4, 5):
            return "IPv6 payload length"
        if off == 6:
            return "IPv6 next header"
        if off == 7:
            return "IPv6 hop limit"
        if 8 <= off < 24:
            return "IPv6 source address"
        if 24 <= off < 40:
            return "IPv6 destination address"
        l4off = 40  # assumes no extension headers
    else:
        return f"byte {off} (IP version {ver}?)"
    rel = off - l4off
    if l4 == "TCP":
        hl = (int(vec[l4off + 12]) >> 4) * 4 if l4off + 12 < VECTOR_LEN else 20
        tcp = {0: "TCP source port", 1: "TCP source port", 2: "TCP destination port", 3: "TCP destination port",
               12: "TCP data offset", 13: "TCP flags", 14: "TCP window", 15: "TCP window",
               16: "TCP checksum", 17: "TCP checksum", 18: "TCP urgent pointer", 19: "TCP urgent pointer"}
        if rel in tcp:
            return tcp[rel]
        if 4 <= rel < 8:
            return "TCP sequence number"
        if 8 <= rel < 12:
            return "TCP acknowledgement number"
        if rel < hl:
            return f"TCP options (byte {rel - 20} of the options)"
        return f"TCP payload (byte {rel - hl})"
    udp = {0: "UDP source port", 1: "UDP source port", 2: "UDP destination port", 3: "UDP destination port",
           4: "UDP length", 5: "UDP length", 6: "UDP checksum", 7: "UDP checksum"}
    if rel in udp:
        return udp[rel]
    if 8 <= rel < 20:
        return "UDP zero padding (Deep Packet)"
    return f"UDP payload (byte {rel - 20})"


def first_diff(x, y):
    d = np.nonzero(x != y)[0]
    return int(d[0]) if len(d) else None


def row_hashes(arr):
    return sorted(hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in arr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("privpkt_dir")
    ap.add_argument("reference_dir")
    ap.add_argument("--max-report", type=int, default=20, help="mismatches described in detail")
    ap.add_argument("--json-out", help="write the result as JSON here")
    ap.add_argument("--ts-tolerance-ns", type=int, default=0,
                    help="timestamps this close count as equal (the reference's --decoder dpkt "
                         "has float timestamps: use 1000)")
    a = ap.parse_args(argv)
    tol = a.ts_tolerance_ns

    P, notes, mpf = load_privpkt(a.privpkt_dir)
    R, rsum = load_reference(a.reference_dir)
    if mpf not in (None, 0) or rsum.get("max_per_flow") not in (None, 0):
        if mpf != rsum.get("max_per_flow"):
            notes.append(f"per-flow caps differ: privpkt {mpf}, reference {rsum.get('max_per_flow')}")
    for n in notes:
        print(f"note: {n}")
    pkeys, rkeys = capture_keys(P, R)
    pr = ranges(P.cap, len(pkeys))
    rr = ranges(R.cap, len(rkeys))
    if pr is None or rr is None:
        fail("rows are not grouped by capture")
    rpos = {k: i for i, k in enumerate(rkeys)}
    ppos = {k: i for i, k in enumerate(pkeys)}

    res = {
        "privpkt_samples": P.n, "reference_samples": R.n,
        "captures_compared": 0, "captures_equal": 0,
        "flows_compared": 0, "flows_equal": 0, "flows_equal_other_order": 0,
        "flows_only_privpkt": 0, "flows_only_reference": 0, "flows_differing": 0,
        "rows_differing": 0, "label_mismatches": 0, "metadata_mismatches": 0,
        "captures_with_other_flow_ids_same_vectors": [],
        "captures_differing": [],
        "captures_only_privpkt": [k for k in pkeys if k not in rpos and pr[ppos[k]][1] > pr[ppos[k]][0]],
        "captures_only_reference": [k for k in rkeys if k not in ppos and rr[rpos[k]][1] > rr[rpos[k]][0]],
        "details": [],
        "fields": defaultdict(int),
    }
    details = res["details"]
    meta_details = []  # reported after the mismatches that count

    def describe(kind, key, flow, prow, rrow, extra=""):
        if kind == "metadata":
            if len(meta_details) < a.max_report:
                meta_details.append((kind, key, flow, prow, rrow, extra))
            return
        if len(details) >= a.max_report:
            return
        d = {"kind": kind, "capture": key, "flow": flow}
        if prow is not None:
            d["privpkt_row"] = prow
            d["privpkt_ts_ns"] = int(P.ts[prow])
        if rrow is not None:
            d["reference_row"] = rrow
            d["reference_ts_ns"] = int(R.ts[rrow])
        if prow is not None and rrow is not None and kind == "vector":
            pv, rv = P.row(prow), R.row(rrow)
            off = first_diff(pv, rv)
            d["first_byte"] = off
            d["field"] = field_at(pv, off, P.l4[prow])
            d["privpkt_bytes"] = pv[max(0, off - 4):off + 8].tobytes().hex()
            d["reference_bytes"] = rv[max(0, off - 4):off + 8].tobytes().hex()
            d["differing_bytes"] = int(np.count_nonzero(pv != rv))
        if extra:
            d["note"] = extra
        details.append(d)

    def bad_count():
        return (res["flows_differing"], res["flows_only_privpkt"], res["flows_only_reference"],
                res["label_mismatches"])

    def note_capture(key, np_, nr, before, same_vectors):
        """Every capture that fails the criterion, with its sample counts on both sides."""
        if bad_count() != before:
            res["captures_differing"].append({
                "capture": key, "privpkt_samples": int(np_), "reference_samples": int(nr),
                "same_vectors_other_flow_ids": same_vectors})

    for key in sorted(set(pkeys) | set(rkeys)):
        if key not in ppos or key not in rpos:
            continue
        pa, pb = pr[ppos[key]]
        ra, rb = rr[rpos[key]]
        res["captures_compared"] += 1
        bad_before = bad_count()
        pflow, rflow = P.flow[pa:pb], R.flow[ra:rb]
        same_layout = (pb - pa == rb - ra) and np.array_equal(pflow, rflow)
        if same_layout:
            # per (capture, flow) in order == row by row, since both emit in packet order
            bad_rows = []
            for i in range(0, pb - pa, BLOCK):
                x = P.rows(pa + i, min(pb, pa + i + BLOCK))
                y = R.rows(ra + i, min(rb, ra + i + BLOCK))
                diff = np.nonzero((x != y).any(axis=1))[0]
                bad_rows.extend((i + diff).tolist())
            labels_bad = [i for i in range(pb - pa) if P.label[pa + i] != R.label[ra + i]]
            meta_bad = [i for i in range(pb - pa)
                        if P.direction[pa + i] != R.direction[ra + i]
                        or abs(int(P.ts[pa + i]) - int(R.ts[ra + i])) > tol]
            flows = np.unique(pflow)
            res["flows_compared"] += len(flows)
            if not bad_rows and not labels_bad:
                res["captures_equal"] += 1
                res["flows_equal"] += len(flows)
            else:
                badf = set(int(pflow[i]) for i in bad_rows) | set(int(pflow[i]) for i in labels_bad)
                # a flow whose vectors differ only in order still counts as equal
                labf = set(int(pflow[i]) for i in labels_bad)
                x_all, y_all = P.rows(pa, pb), R.rows(ra, rb)
                other_order = 0
                for fl in sorted(badf):
                    pi = np.nonzero(pflow == fl)[0]
                    if fl not in labf and row_hashes(x_all[pi]) == row_hashes(y_all[pi]):
                        other_order += 1
                        badf.discard(fl)
                res["flows_equal_other_order"] += other_order
                res["flows_equal"] += len(flows) - len(badf) - other_order
                res["flows_differing"] += len(badf)
                for i in bad_rows:
                    if int(pflow[i]) in badf:
                        res["rows_differing"] += 1
                        pv, rv = P.row(pa + i), R.row(ra + i)
                        off = first_diff(pv, rv)
                        res["fields"][field_at(pv, off, P.l4[pa + i])] += 1
                        describe("vector", key, int(pflow[i]), pa + i, ra + i)
                for i in labels_bad:
                    res["label_mismatches"] += 1
                    describe("label", key, int(pflow[i]), pa + i, ra + i,
                             f"privpkt {P.label[pa + i]!r}, reference {R.label[ra + i]!r}")
            for i in meta_bad:
                res["metadata_mismatches"] += 1
                describe("metadata", key, int(pflow[i]), pa + i, ra + i,
                         f"direction {P.direction[pa + i]}/{R.direction[ra + i]}, "
                         f"timestamp {P.ts[pa + i]}/{R.ts[ra + i]}")
            note_capture(key, pb - pa, rb - ra, bad_before, False)
            continue
        # flow layout differs: compare per flow id, then the capture as a whole
        pv_all, rv_all = P.rows(pa, pb), R.rows(ra, rb)
        pf, rf = defaultdict(list), defaultdict(list)
        for i, fl in enumerate(pflow.tolist()):
            pf[fl].append(i)
        for i, fl in enumerate(rflow.tolist()):
            rf[fl].append(i)
        for fl in sorted(set(pf) | set(rf)):
            res["flows_compared"] += 1
            if fl not in rf:
                res["flows_only_privpkt"] += 1
                describe("flow only in privpkt", key, fl, pa + pf[fl][0], None,
                         f"{len(pf[fl])} vectors")
                continue
            if fl not in pf:
                res["flows_only_reference"] += 1
                describe("flow only in reference", key, fl, None, ra + rf[fl][0],
                         f"{len(rf[fl])} vectors")
                continue
            x, y = pv_all[pf[fl]], rv_all[rf[fl]]
            lab_ok = P.label[pa + pf[fl][0]] == R.label[ra + rf[fl][0]]
            if not lab_ok:
                res["label_mismatches"] += 1
                describe("label", key, fl, pa + pf[fl][0], ra + rf[fl][0],
                         f"privpkt {P.label[pa + pf[fl][0]]!r}, reference {R.label[ra + rf[fl][0]]!r}")
            if x.shape == y.shape and np.array_equal(x, y):
                if lab_ok:
                    res["flows_equal"] += 1
                continue
            if x.shape == y.shape and row_hashes(x) == row_hashes(y):
                if lab_ok:
                    res["flows_equal_other_order"] += 1
                continue
            res["flows_differing"] += 1
            m = min(len(x), len(y))
            diff = np.nonzero((x[:m] != y[:m]).any(axis=1))[0]
            if len(diff):
                j = int(diff[0])
                res["rows_differing"] += len(diff)
                res["fields"][field_at(x[j], first_diff(x[j], y[j]), P.l4[pa + pf[fl][j]])] += 1
                describe("vector", key, fl, pa + pf[fl][j], ra + rf[fl][j],
                         f"privpkt {len(x)} vectors, reference {len(y)}")
            else:
                describe("count", key, fl, pa + pf[fl][m] if len(x) > m else None,
                         ra + rf[fl][m] if len(y) > m else None,
                         f"privpkt {len(x)} vectors, reference {len(y)}; the first {m} agree")
        if pv_all.shape == rv_all.shape and row_hashes(pv_all) == row_hashes(rv_all):
            res["captures_with_other_flow_ids_same_vectors"].append(key)
            note_capture(key, pb - pa, rb - ra, bad_before, True)
        else:
            note_capture(key, pb - pa, rb - ra, bad_before, False)

    for m in meta_details[:max(0, a.max_report - len(details))]:
        kind, key, flow, prow, rrow, extra = m
        d = {"kind": kind, "capture": key, "flow": flow, "privpkt_row": prow,
             "privpkt_ts_ns": int(P.ts[prow]), "reference_row": rrow,
             "reference_ts_ns": int(R.ts[rrow]), "note": extra}
        details.append(d)
    res["fields"] = dict(sorted(res["fields"].items(), key=lambda kv: -kv[1]))
    ok = (P.n == R.n and res["flows_differing"] == 0 and res["flows_only_privpkt"] == 0
          and res["flows_only_reference"] == 0 and res["label_mismatches"] == 0
          and not res["captures_only_privpkt"] and not res["captures_only_reference"])
    res["match"] = ok

    print(f"privpkt: {P.n} vectors in {len(pkeys)} captures; reference: {R.n} vectors in {len(rkeys)} captures")
    print(f"captures compared {res['captures_compared']}, identical {res['captures_equal']}")
    print(f"(capture, flow) pairs compared {res['flows_compared']}: equal {res['flows_equal']}, "
          f"equal in another order {res['flows_equal_other_order']}, differing {res['flows_differing']}, "
          f"only privpkt {res['flows_only_privpkt']}, only reference {res['flows_only_reference']}")
    if res["captures_only_privpkt"] or res["captures_only_reference"]:
        print(f"captures with samples on one side only: privpkt {res['captures_only_privpkt'][:10]}, "
              f"reference {res['captures_only_reference'][:10]}")
    if res["rows_differing"]:
        print(f"rows differing: {res['rows_differing']}; first differing field: {res['fields']}")
    if res["label_mismatches"]:
        print(f"label mismatches: {res['label_mismatches']}")
    if res["metadata_mismatches"]:
        print(f"direction/timestamp mismatches (not counted as failure): {res['metadata_mismatches']}")
    if res["captures_differing"]:
        print(f"captures differing: {len(res['captures_differing'])}: "
              f"{[c['capture'] for c in res['captures_differing']][:20]}")
    if res["captures_with_other_flow_ids_same_vectors"]:
        print("captures whose vectors agree but whose flow ids do not: "
              f"{res['captures_with_other_flow_ids_same_vectors'][:10]}")
    for d in details:
        print("  " + json.dumps(d))
    print("MATCH" if ok else "MISMATCH")
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump(res, fh, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
