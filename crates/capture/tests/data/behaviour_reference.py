"""Independent reference for privpkt's flow statistics (crates/capture/tests/behaviour.rs).

Computes every statistic of the two hand-built flows of that test straight from their packet
lists with numpy, following the definitions in docs/data.md (nfstream's where the names match:
sample standard deviation, gaps within a direction, durations first-to-last packet). Run it to
regenerate behaviour_reference.json:  python3 behaviour_reference.py > behaviour_reference.json
"""
import json
import numpy as np

SYN, ACK, PSH, FIN, RST, URG, ECE, CWR = 0x02, 0x10, 0x08, 0x01, 0x04, 0x20, 0x40, 0x80
# (time in ms, direction: 0 forward / 1 backward, transport payload bytes, TCP flags)
TCP = [
    (0.0, 0, 0, SYN), (10.0, 1, 0, SYN | ACK), (20.0, 0, 0, ACK), (25.0, 0, 100, PSH | ACK),
    (60.0, 1, 0, ACK), (70.0, 1, 1000, PSH | ACK), (71.5, 1, 400, PSH | ACK), (90.0, 0, 0, ACK),
    (500.0, 0, 0, FIN | ACK), (510.0, 1, 0, FIN | ACK), (520.0, 0, 0, ACK),
]
UDP = [(0.0, 0, 10, 0), (1000.0, 1, 20, 0), (1002.0, 0, 30, 0)]


def stats(pkts, header, proto):
    out = {}
    dirs = {"bidirectional": pkts, "src2dst": [p for p in pkts if p[1] == 0],
            "dst2src": [p for p in pkts if p[1] == 1]}
    flags = [("syn", SYN), ("cwr", CWR), ("ece", ECE), ("urg", URG), ("ack", ACK), ("psh", PSH),
             ("rst", RST), ("fin", FIN)]
    for d, ps in dirs.items():
        t = np.array([p[0] for p in ps])
        size = np.array([header + p[2] for p in ps], dtype=float)
        gaps = np.diff(t) if len(t) > 1 else np.array([])
        out[f"{d}_duration_ms"] = float(t[-1] - t[0]) if len(t) else 0.0
        out[f"{d}_packets"] = len(ps)
        out[f"{d}_bytes"] = float(size.sum())
        out[f"{d}_min_ps"] = float(size.min()) if len(ps) else 0.0
        out[f"{d}_mean_ps"] = float(size.mean()) if len(ps) else 0.0
        out[f"{d}_stddev_ps"] = float(size.std(ddof=1)) if len(ps) > 1 else 0.0
        out[f"{d}_max_ps"] = float(size.max()) if len(ps) else 0.0
        out[f"{d}_min_piat_ms"] = float(gaps.min()) if len(gaps) else 0.0
        out[f"{d}_mean_piat_ms"] = float(gaps.mean()) if len(gaps) else 0.0
        out[f"{d}_stddev_piat_ms"] = float(gaps.std(ddof=1)) if len(gaps) > 1 else 0.0
        out[f"{d}_max_piat_ms"] = float(gaps.max()) if len(gaps) else 0.0
        for name, bit in flags:
            out[f"{d}_{name}_packets"] = sum(1 for p in ps if p[3] & bit)
    for d, ps in dirs.items():
        size = np.array([header + p[2] for p in ps], dtype=float)
        t = np.array([p[0] for p in ps])
        gaps = np.diff(t)
        out[f"{d}_payload_bytes"] = float(sum(p[2] for p in ps))
        out[f"{d}_zero_payload_packets"] = sum(1 for p in ps if p[2] == 0)
        for q in (10, 25, 50, 75, 90):
            out[f"{d}_p{q}_ps"] = float(np.percentile(size, q)) if len(ps) else 0.0
        for q in (50, 90):
            out[f"{d}_p{q}_piat_ms"] = float(np.percentile(gaps, q)) if len(gaps) else 0.0
    runs = []  # (direction, packets, bytes) of maximal same-direction runs
    for p in pkts:
        if runs and runs[-1][0] == p[1]:
            runs[-1][1] += 1
            runs[-1][2] += header + p[2]
        else:
            runs.append([p[1], 1, header + p[2]])
    out["bidirectional_bursts"] = len(runs)
    for i, d in enumerate(("src2dst", "dst2src")):
        mine = [r for r in runs if r[0] == i]
        out[f"{d}_mean_burst_packets"] = float(np.mean([r[1] for r in mine])) if mine else 0.0
        out[f"{d}_max_burst_bytes"] = float(max(r[2] for r in mine)) if mine else 0.0
    allb = out["bidirectional_bytes"]
    out["dst2src_bytes_share"] = out["dst2src_bytes"] / allb
    out["dst2src_packets_share"] = out["dst2src_packets"] / out["bidirectional_packets"]
    secs = out["bidirectional_duration_ms"] / 1e3
    out["bidirectional_packets_per_s"] = out["bidirectional_packets"] / secs if secs > 0 else 0.0
    out["bidirectional_bytes_per_s"] = out["bidirectional_bytes"] / secs if secs > 0 else 0.0
    out["protocol"] = proto
    return out


print(json.dumps({"tcp": stats(TCP, 40, 6), "udp": stats(UDP, 28, 17)}, indent=1, sort_keys=True))
