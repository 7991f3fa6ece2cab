"""One GPU check, start to finish: build a dataset from the simulator, train both models, measure the ceiling.

    python benchmarks/gpu_check.py [--per-genre 600] [--epochs 3] [--workers N] [--dry-run]
    bash benchmarks/gpu_check.sh [--dry-run]          # the same, with PYTHONPATH and $OUT set up

Stages (each timed, each with its own deadline, each one's failure recorded and the next one still run):
  1. build     `equigen simulate --render-processes R --rate-limit 0` in its own process (covers drawn in R
               forked processes), then `equigen fetch --mb-interval 0`, dedup, balance, split: 15 x per-genre
               covers of 500 px (9,000 at the default 600).
  2. loader    the training loader alone (no model) on this machine's cores: img/s, and img/s per worker.
  3. nvjpeg    torchvision.io.decode_jpeg(..., device="cuda") on batches of the same covers (measured only).
  4. ceiling   each model on synthetic batches already on the GPU (batch, bf16 autocast, channels_last, AdamW):
               the img/s training could reach if input were free.
  5. train     `equigen baseline --device cuda` per model (from scratch, --image-size, --epochs, one seed),
               with nvidia-smi sampled every 0.5 s: img/s per epoch, GPU utilisation and memory, and steady
               img/s (epochs after the first) as a share of the ceiling.
Writes gpu_check.json and gpu_check.log into $OUT (or benchmarks/work/gpu_check/) and prints a summary.
--dry-run: the same stages at toy size on the CPU (about a minute), to check the script before GPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG: list[str] = []
T0 = time.monotonic()


def say(msg: str) -> None:
    line = f"[{time.monotonic() - T0:6.1f}s] {msg}"
    print(line, flush=True)
    LOG.append(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def equigen(args: list[str], timeout: float, log: Path) -> float:
    """Run `python -m equigen.cli ARGS`, output appended to `log`; seconds taken. Raises on failure."""
    t = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"\n$ equigen {' '.join(args)}\n")
        fh.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "equigen.cli", *args], stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO
        )
    seconds = time.monotonic() - t
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"equigen {args[0]} exited {proc.returncode} after {seconds:.0f} s:\n{tail}")
    return seconds


# ---- 1. dataset -----------------------------------------------------------------------------------


def build_dataset(a, out: Path, res: dict) -> Path:
    data = a.work / "data"
    if a.reuse and (data / "dataset" / "data").is_dir():
        say(f"build: reusing {data}")
        res["build"] = {"reused": str(data)}
        return data / "dataset"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    log = out / "build.log"
    port = free_port()
    artists = a.artists or max(3000, 33 * a.per_genre)  # as benchmarks/rehearsal.py sizes its world
    knobs = ["--port", str(port), "--artists", str(artists), "--rate-limit", "0", "--no-log"]
    knobs += ["--render-processes", str(a.render_processes)]
    t = time.monotonic()
    sim = subprocess.Popen(
        [sys.executable, "-m", "equigen.cli", "simulate", *knobs],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/__sim__/health", timeout=1).read()
                break
            except OSError:
                if sim.poll() is not None or time.monotonic() - t > 120:
                    raise RuntimeError(f"the simulator did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        stages = {"simulator_start": time.monotonic() - t}
        up = stages["simulator_start"]
        say(f"build: simulator ({artists} artists, {a.render_processes} render processes) up in {up:.1f} s")
        common = ["--data-dir", str(data)]
        stages["fetch"] = equigen(
            ["fetch", *common, "--musicbrainz-url", url, "--coverart-url", url, "--per-genre", str(a.per_genre),
             "--mb-interval", "0", "--thumbnail", "500"],
            a.build_timeout, log,
        )  # fmt: skip
        say(f"build: fetch {stages['fetch']:.1f} s")
    finally:
        sim.send_signal(signal.SIGINT)  # the simulator's clean stop (its render processes with it)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
    stages["dedup"] = equigen(["dedup", *common], 120, log)
    stages["balance"] = equigen(["balance", *common, "--per-genre", str(a.per_genre), "--allow-short"], 120, log)
    stages["split"] = equigen(["split", *common], 300, log)
    import pyarrow.parquet as pq

    rows = {s: sum(pq.ParquetFile(p).metadata.num_rows for p in (data / "dataset" / "data").glob(f"{s}-*.parquet"))
            for s in ("train", "validation", "test")}  # fmt: skip
    res["build"] = {"seconds": stages, "total_s": time.monotonic() - t, "covers": rows, "artists": artists}
    say(f"build: {sum(rows.values())} covers {rows} in {time.monotonic() - t:.1f} s ({stages})")
    return data / "dataset"


# ---- 2. loader alone --------------------------------------------------------------------------------


def loader_alone(a, dataset: Path, res: dict) -> None:
    import torch

    from equigen.baseline.data import load_split, train_loader

    torch.set_num_threads(1)
    split = load_split(dataset, "train", a.image_size, 10**6)
    out = {}
    for workers in sorted({a.workers, 1}):
        loader = train_loader(split, a.batch, workers, seed=0, rank=0, world=1, pin_memory=False)
        it_s, n = [], 0
        limit = 12 * workers  # batches per epoch: enough for a steady rate, little device time
        for epoch in range(2):  # epoch 0 starts the workers and warms the page cache
            loader.dataset.set_epoch(epoch)
            t, n = time.perf_counter(), 0
            for k, (x, _) in enumerate(loader):
                n += len(x)
                if k + 1 >= limit:
                    break
            it_s.append(n / (time.perf_counter() - t))
        out[workers] = {"img_s": it_s[-1], "img_s_per_worker": it_s[-1] / workers, "images": n}
        say(
            f"loader: {workers} workers {it_s[-1]:.0f} img/s ({it_s[-1] / workers:.0f} per worker) at {a.image_size} px"
        )
        del loader
    res["loader"] = out


# ---- 3. nvjpeg ----------------------------------------------------------------------------------------


def nvjpeg(a, dataset: Path, res: dict) -> None:
    import torch
    import torchvision
    from torchvision.io import decode_jpeg

    from equigen.baseline.data import load_split

    split = load_split(dataset, "train", a.image_size, 10**6)
    datas = []
    for k in range(min(len(split.pieces), 8)):
        datas += [torch.frombuffer(bytearray(b.as_py()), dtype=torch.uint8) for b in split.read_piece(k)]
    datas = (datas * (1 + 1024 // max(1, len(datas))))[:1024]
    device = "cuda" if torch.cuda.is_available() and not a.dry_run else "cpu"
    batches = [datas[i : i + a.batch] for i in range(0, len(datas), a.batch)]
    for b in batches[:2]:  # warm-up (nvjpeg handles, allocations)
        decode_jpeg(b, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for b in batches:
        decode_jpeg(b, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    rate = len(datas) / (time.perf_counter() - t)
    res["nvjpeg"] = {"device": device, "img_s_full_decode": rate, "torchvision": torchvision.__version__}
    say(f"decode_jpeg on {device}: {rate:.0f} img/s (full 500 px decode, batches of {a.batch}; no crop/resize)")


# ---- 4. synthetic ceiling ----------------------------------------------------------------------------


def _ceiling_one(name: str, a, cuda: bool) -> dict:
    import torch
    from torch import nn

    from equigen.baseline.models import build_model

    device = torch.device("cuda" if cuda else "cpu")
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = build_model(name, 15).to(device, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 15, (a.batch,), device=device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(a.ceiling_warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.ceiling_steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    rate = a.ceiling_steps * a.batch / (time.perf_counter() - t)
    mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {"img_s": rate, "max_memory_allocated_gib": mem}


def ceiling(a, res: dict) -> None:
    import torch

    cuda = torch.cuda.is_available() and not a.dry_run
    if cuda:
        torch.backends.cudnn.benchmark = True
    out = res["ceiling"] = {}
    for name in a.models:
        out[name] = row = _ceiling_one(name, a, cuda)
        mem = row["max_memory_allocated_gib"]
        how = "bf16 channels_last" if cuda else "cpu fp32"
        say(
            f"ceiling: {name} {row['img_s']:.0f} img/s on synthetic batches ({a.batch}, {a.image_size} px, {how})"
            + (f", {mem:.1f} GiB" if mem else "")
        )
        if cuda:
            torch.cuda.empty_cache()


# ---- 5. training -----------------------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi every 0.5 s in the background: (t, util %, memory used MiB) per sample."""

    def __init__(self):
        self.samples: list[tuple[float, float, float]] = []
        self.proc = None
        exe = shutil.which("nvidia-smi")
        if exe:
            cmd = [exe, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.strip().split(",")[:2])
            except ValueError:
                continue
            self.samples.append((time.monotonic(), util, mem))

    def window(self, t0: float, t1: float) -> dict:
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        if not s:
            return {"samples": 0}
        utils = sorted(u for _, u, _ in s)
        return {
            "samples": len(s),
            "util_mean": sum(utils) / len(utils),
            "util_median": utils[len(utils) // 2],
            "memory_used_max_mib": max(m for _, _, m in s),
        }

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()


def train(a, dataset: Path, out: Path, res: dict) -> None:
    sampler = GpuSampler()
    runs = a.work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    log = out / "train.log"
    res["train"] = {}
    try:
        for name in a.models:
            t0 = time.monotonic()
            args = ["baseline", "--dataset", str(dataset), "--runs-dir", str(runs), "--name", name,
                    "--models", name, "--epochs", str(a.epochs), "--seeds", "0", "--no-pretrained",
                    "--image-size", str(a.image_size), "--batch-size", str(a.batch), "--workers", str(a.workers),
                    "--patience", "0", "--no-progress", "--device", "cpu" if a.dry_run else "cuda"]  # fmt: skip
            if a.max_train_batches:
                args += ["--max-train-batches", str(a.max_train_batches)]
            try:
                seconds = equigen(args, a.train_timeout, log)
            except Exception as e:  # record it; the next model still runs
                res["train"][name] = {"error": str(e)[-1500:]}
                say(f"train: {name} FAILED: {str(e)[-300:]}")
                continue
            t1 = time.monotonic()
            hist = json.loads((runs / name / name / "seed-0" / "history.json").read_text())
            epochs = [h["train_images"] / h["train_seconds"] for h in hist]
            later = hist[1:] or hist  # epoch 1 holds cuDNN's autotuning
            steady = sum(h["train_images"] for h in later) / max(1e-9, sum(h["train_seconds"] for h in later))
            # the same without each epoch's wait for its first batch (workers reading their first blocks)
            flowing = sum(h["train_images"] for h in later) / max(
                1e-9, sum(h["train_seconds"] - h.get("train_first_batch_seconds", 0.0) for h in later)
            )
            ceil = res.get("ceiling", {}).get(name, {}).get("img_s")
            row = {
                "wall_s": seconds,
                "img_s_per_epoch": epochs,
                "train_seconds_per_epoch": [h["train_seconds"] for h in hist],
                "first_batch_seconds_per_epoch": [h.get("train_first_batch_seconds") for h in hist],
                "steady_img_s": steady,
                "share_of_ceiling": steady / ceil if ceil else None,
                "steady_img_s_after_first_batch": flowing,
                "share_of_ceiling_after_first_batch": flowing / ceil if ceil else None,
                "gpu": sampler.window(t0, t1),
            }
            res["train"][name] = row
            share = (
                f" = {row['share_of_ceiling']:.0%} of the synthetic ceiling {ceil:.0f}"
                f" ({row['share_of_ceiling_after_first_batch']:.0%} without each epoch's first-batch wait)"
                if ceil
                else ""
            )
            say(f"train: {name} img/s per epoch {[round(e) for e in epochs]}, steady {steady:.0f}{share}; "
                f"GPU {row['gpu']}; {seconds:.0f} s in all")  # fmt: skip
    finally:
        sampler.stop()


# ---- main -------------------------------------------------------------------------------------------


def machine() -> dict:
    info = {"python": platform.python_version(), "cores": os.cpu_count(), "host": platform.node()}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        import torch
        import torchvision

        info["torch"], info["torchvision"] = torch.__version__, torchvision.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    except Exception as e:  # noqa: BLE001
        info["torch_error"] = str(e)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="toy size on the CPU: checks the script, not the GPU")
    p.add_argument("--per-genre", type=int, default=600)
    p.add_argument("--artists", type=int, default=0, help="world size [default 33 x --per-genre]")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--models", default="resnet50,efficientnet_b0")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    p.add_argument("--workers", type=int, default=max(1, cores - 2), help="loader workers [default: cores - 2]")
    p.add_argument("--render-processes", type=int, default=max(1, cores - 4))
    p.add_argument("--max-train-batches", type=int, default=0)
    p.add_argument("--ceiling-steps", type=int, default=60)
    p.add_argument("--ceiling-warmup", type=int, default=20)
    p.add_argument("--build-timeout", type=float, default=240)
    p.add_argument("--train-timeout", type=float, default=150, help="seconds per model")
    p.add_argument("--work", type=Path, default=None, help="dataset and runs [default: $OUT-independent temp]")
    p.add_argument("--reuse", action="store_true", help="reuse a dataset already built in --work")
    p.add_argument("--skip", default="", help="comma-separated stages to skip: loader,nvjpeg,ceiling,train")
    a = p.parse_args()
    a.models = [m for m in a.models.split(",") if m]
    if a.dry_run:
        a.per_genre, a.artists, a.epochs, a.batch, a.image_size = 12, 3000, 2, 16, 32
        a.workers, a.render_processes, a.max_train_batches = 2, 2, 3
        a.ceiling_steps, a.ceiling_warmup, a.models = 3, 1, ["resnet18", "efficientnet_b0"]
    out = Path(os.environ.get("OUT") or REPO / "benchmarks" / "work" / "gpu_check")
    if a.dry_run and not os.environ.get("OUT"):
        out = REPO / "benchmarks" / "work" / "gpu_check-dry-run"
    out.mkdir(parents=True, exist_ok=True)
    a.work = a.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"equigen-gpu-check{'-dry' if a.dry_run else ''}"
    a.work.mkdir(parents=True, exist_ok=True)
    skip = set(a.skip.split(","))
    res: dict = {"argv": sys.argv[1:], "machine": machine(), "dry_run": a.dry_run, "errors": {}}
    res["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    say(f"gpu_check: {res['machine']}")
    say(f"settings: {res['settings']}")

    def stage(name, fn, *args):
        if name in skip:
            return None
        t = time.monotonic()
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - record, keep going: GPU time is scarce
            res["errors"][name] = traceback.format_exc()[-3000:]
            say(f"{name} FAILED: {type(e).__name__}: {str(e)[-500:]}")
        finally:
            res.setdefault("stage_seconds", {})[name] = time.monotonic() - t
            write(out, res)

    dataset = stage("build", build_dataset, a, out, res)
    if dataset is not None:
        stage("loader", loader_alone, a, dataset, res)
        stage("nvjpeg", nvjpeg, a, dataset, res)
    stage("ceiling", ceiling, a, res)
    if dataset is not None:
        stage("train", train, a, dataset, out, res)
    res["total_s"] = time.monotonic() - T0
    say(f"done in {res['total_s']:.0f} s; errors in: {sorted(res['errors']) or 'none'}; figures in {out}")
    write(out, res)
    return 1 if res["errors"] else 0


def write(out: Path, res: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "gpu_check.log").write_text("\n".join(LOG) + "\n")


if __name__ == "__main__":
    sys.exit(main())
