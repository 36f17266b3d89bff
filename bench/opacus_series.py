#!/usr/bin/env python3
"""Peer benchmark: privpkt's packet-series network (series-cnn) in PyTorch, with and without Opacus.

The same layers, sizes and input as privpkt's `series-cnn` on flow behaviour samples (30-packet series
with 16 payload bytes per packet and the 94 flow statistics, each number spread over 16 piecewise-linear
bins, each payload byte as 8 bits): a 1-wide Conv1d of 64 filters (a packet embedding) and two 3-wide ones over
the series, masked max and mean pooling, a dense branch on the first 10 packets' behaviour inputs, a dense branch
on the statistics, dense 128 with dropout 0.1, output. No BatchNorm (DP-SGD needs per-example gradients).

Measures samples/s at one batch size for
  * the non-private SGD step (forward + backward + update),
  * Opacus DP-SGD with grad_sample_mode="hooks" (per-sample gradients materialised),
  * Opacus DP-SGD with grad_sample_mode="ghost" (ghost clipping),
every example its own privacy unit, clipping norm 1, noise multiplier 1 (as privpkt's benchmark step).

  python opacus_series.py [--threads 2] [--batch 256] [--iters 10] [--packets 30] [--payload-bytes 16]
Prints one JSON object.
"""
import argparse
import json
import time
import warnings

import torch
import torch.nn as nn

warnings.filterwarnings("ignore")

PLE_BINS = 16
PLAIN = 8  # mask, direction, six flags
BEHAVIOUR = PLAIN + 3 * PLE_BINS  # + IP length, payload length, gap, binned
FIRST = 10
STATS = 94


class SeriesCnn(nn.Module):
    def __init__(self, packets, payload_bytes, stats, classes):
        super().__init__()
        self.packets = packets
        self.width = BEHAVIOUR + 8 * payload_bytes
        self.stats = stats * PLE_BINS
        self.convs = nn.ModuleList([nn.Conv1d(self.width, 64, 1), nn.Conv1d(64, 64, 3), nn.Conv1d(64, 64, 3)])
        self.first = nn.Linear(min(packets, FIRST) * BEHAVIOUR, 64)
        self.stat = nn.Linear(self.stats, 64) if stats else None
        self.fc = nn.Linear(64 * (4 if stats else 3), 128)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(128, classes)

    def forward(self, x):
        b = x.shape[0]
        series = x[:, : self.packets * self.width].reshape(b, self.packets, self.width)
        w = self.packets - 4
        mask = series[:, :w, 0].unsqueeze(1)  # [B, 1, W]
        h = series.transpose(1, 2)
        for c in self.convs:
            h = torch.relu(c(h))
        h = h * mask
        mx = h.max(dim=2).values
        mean = h.sum(dim=2) / mask.sum(dim=2).clamp(min=1.0)
        first = torch.relu(self.first(series[:, : min(self.packets, FIRST), :BEHAVIOUR].reshape(b, -1)))
        parts = [mx, mean, first]
        if self.stat is not None:
            parts.append(torch.relu(self.stat(x[:, self.packets * self.width:])))
        h = self.drop(torch.relu(self.fc(torch.cat(parts, 1))))
        return self.out(h)


def timeit(fn, iters):
    fn()
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--packets", type=int, default=30)
    ap.add_argument("--payload-bytes", type=int, default=16)
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = SeriesCnn(a.packets, a.payload_bytes, STATS, a.classes)
    features = a.packets * model.width + model.stats
    B = a.batch
    x = torch.rand(B, features)
    y = torch.arange(B) % a.classes
    crit = nn.CrossEntropyLoss()
    out = {"peer": f"PyTorch {torch.__version__}", "threads": torch.get_num_threads(), "batch": B,
           "features": features, "params": sum(p.numel() for p in model.parameters())}
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()

    t = timeit(step, a.iters)
    out["non_private_samples_per_s"] = B / t

    import opacus
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    out["opacus"] = opacus.__version__
    for mode in ("hooks", "ghost"):
        torch.manual_seed(0)
        m = SeriesCnn(a.packets, a.payload_bytes, STATS, a.classes)
        o = torch.optim.SGD(m.parameters(), lr=0.01)
        dl = DataLoader(TensorDataset(x, y), batch_size=B)
        res = PrivacyEngine().make_private(module=m, optimizer=o, criterion=nn.CrossEntropyLoss(), data_loader=dl,
                                           noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False,
                                           grad_sample_mode=mode)
        if mode == "ghost":
            m, o, c, _ = res
        else:
            m, o, _ = res
            c = nn.CrossEntropyLoss()

        def dpstep():
            o.zero_grad()
            c(m(x), y).backward()
            o.step()

        try:
            out[f"opacus_{mode}_samples_per_s"] = B / timeit(dpstep, a.iters)
        except Exception as e:  # noqa: BLE001 (report, do not hide, a mode Opacus cannot run)
            out[f"opacus_{mode}_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
