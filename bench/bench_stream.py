"""Peak memory and input rate of the training input, in memory against streamed (issue 16).

For training sets of 10^4 and 10^5 40x40 maps (random values in a prepared set's layout:
inputs (n, 40, 40, 1), labels (n, 40, 40, 2), float32, 200 maps per Zarr chunk as
``split_dataset`` writes them), each in its own child process so that its peak resident memory
is its own:

- ``memory``: ``train.load_set`` then ``train.epoch_batches`` (the default,
  ``training.streaming: false``);
- ``streamed``: ``stream.StreamedSet`` and ``stream.streamed_epoch_batches``
  (``streaming: true``, a buffer of ``BUFFER_MAPS`` maps).

Each child reads one epoch of batches of 8 (the CPU config's batch) and prints its open/load
seconds, the epoch's images/s and its peak RSS; the table gives the streamed/in-memory ratios
measured in the same run, and the peak RSS of an idle child that only imported TensorFlow and
the two input modules (the floor the data add to). The CPU config trains at ~80 images/s on 2
idle cores: the input must stay far above that.

    python bench/bench_stream.py [--sizes 10000 100000] [--batch 8] [--keep DIR]

On 2 cores the default run takes ~3 minutes (most of it writing the 1.9 GB set of 10^5 maps).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from szmass.io import write_zarr_atomic

NPIX = 40

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
mode, path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {"mode": mode}
t0 = time.perf_counter()
if mode == "memory":
    from szmass.network.train import epoch_batches, load_set
    x, y = load_set(path, input_size=40)
    n = len(x)
    stream = epoch_batches(x, y, batch_size=batch, seed=1, first_epoch=0, last_epoch=1)
elif mode == "streamed":
    from szmass.network.stream import StreamedSet, streamed_epoch_batches
    data = StreamedSet(path, input_size=40)
    n = data.n
    stream = streamed_epoch_batches(data, batch_size=batch, seed=1, first_epoch=0, last_epoch=1)
else:  # the floor: TensorFlow and both input modules imported (xarray, zarr), no data
    import szmass.network.stream, szmass.network.train  # noqa: E401, F401
    n, stream = 0, []
out["load_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
seen = 0
for xb, yb in stream:
    seen += int(xb.shape[0])
out["epoch_s"] = time.perf_counter() - t0
out["images"] = seen
if seen != n:
    raise SystemExit(f"{mode}: one epoch gave {seen} maps of {n}")
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would inherit the peak of the
# parent that forked it (the parent writes the sets: ~3 GB at 10^5 maps)
with open("/proc/self/status") as status:
    hwm = [ln for ln in status if ln.startswith("VmHWM:")]
out["peak_rss_mb"] = (
    int(hwm[0].split()[1]) / 1024 if hwm
    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
)
print("RESULT " + json.dumps(out), flush=True)
"""


def store_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def write_set(path: Path, n: int, seed: int = 0) -> None:
    """A prepared-set-shaped Zarr store of ``n`` random maps."""
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(
        {
            "inputs": (("map", "y", "x", "channel"), rng.standard_normal((n, NPIX, NPIX, 1), "f4")),
            "labels": (("map", "y", "x", "label"), rng.standard_normal((n, NPIX, NPIX, 2), "f4")),
        }
    )
    write_zarr_atomic(ds, path)


def run_child(mode: str, path: Path, batch: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(batch)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{mode} on {path} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--keep", type=Path, default=None, help="write the sets here, keep them")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_stream_"))
    root.mkdir(parents=True, exist_ok=True)
    floor = run_child("floor", root, args.batch)["peak_rss_mb"]
    print(f"peak RSS of a child with TensorFlow and szmass imported, no data: {floor:.0f} MB")
    head = (
        f"{'maps':>8} {'set MB':>7} {'mode':>9} {'open s':>7} {'images/s':>9} "
        f"{'peak RSS MB':>11} {'above floor':>11}"
    )
    print(head)
    ratios = []
    try:
        for n in args.sizes:
            path = root / f"train_{n}.zarr"
            t0 = time.perf_counter()
            if not path.exists():  # a kept set (--keep) is reused
                write_set(path, n)
            size_mb = store_mb(path)
            write_s = time.perf_counter() - t0
            got = {}
            for mode in ("memory", "streamed"):
                r = run_child(mode, path, args.batch)
                rate = r["images"] / r["epoch_s"]
                got[mode] = (rate, r["peak_rss_mb"])
                print(
                    f"{n:>8} {size_mb:>7.0f} {mode:>9} {r['load_s']:>7.1f} {rate:>9.0f} "
                    f"{r['peak_rss_mb']:>11.0f} {r['peak_rss_mb'] - floor:>11.0f}"
                )
            rate_ratio = got["streamed"][0] / got["memory"][0]
            mem_ratio = (got["streamed"][1] - floor) / (got["memory"][1] - floor)
            ratios.append((n, rate_ratio, mem_ratio))
            print(f"{'':>8} (writing the set took {write_s:.0f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print("\nstreamed / in memory, same run:")
    for n, rate, mem in ratios:
        print(f"  {n:>8} maps: input rate x{rate:.2f}, memory above the floor x{mem:.3f}")
    print(f"  (the load: {os.cpu_count()} CPUs; other processes running meanwhile lower rates)")


if __name__ == "__main__":
    main()
