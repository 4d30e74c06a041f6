#!/usr/bin/python3
"""Image-folder loader throughput: ours (bench/loader_bench) against torchvision's ImageFolder +
DataLoader (Debian's python3-torchvision), on the same folder, the same transforms and the same
number of workers, alternated A/B/A/B in one run so that the machine's drifting speed hits both.

  /usr/bin/python3 bench/loader_compare.py --bench build/bench/loader_bench \
      --folder /tmp/loader_folder [--rounds 4] [--workers 2] [--configs train96,train224,eval224]

Makes the folder first when it does not exist (loader_bench --make_folder: 2,000 JPEGs at
400x300 from Fashion-MNIST). One epoch per measurement (batch 64, drop_last, shuffled), timed
from the loader's creation to its last batch (worker start-up included on both sides). Prints a
markdown table and the median ratio per configuration.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch
import torchvision
from torchvision import datasets, transforms

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def torchvision_epoch(folder, train, size, workers, batch, seed):
    if train:
        tf = transforms.Compose([
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])
    else:
        tf = transforms.Compose([
            transforms.Resize(int(size / 0.875)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    ds = datasets.ImageFolder(folder, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True)
    images = 0
    for x, y in loader:
        assert x.shape[1:] == (3, size, size)
        images += x.shape[0]
    s = time.perf_counter() - t0
    return images, s


def ours_epoch(bench, folder, train, size, workers, batch, seed):
    cmd = [bench, f"--folder={folder}", f"--size={size}", f"--threads={workers}",
           f"--batch={batch}", f"--seed={seed}"]
    if not train:
        cmd.append("--eval")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["images"], r["seconds"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default="build/bench/loader_bench")
    p.add_argument("--folder", default="/tmp/loader_folder")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--configs", default="train96,train224,eval224")
    a = p.parse_args()
    if not os.path.isdir(a.folder):
        subprocess.run([a.bench, f"--make_folder={a.folder}"], check=True)
    torch.set_num_threads(a.workers)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"folder {a.folder}, workers {a.workers}, batch {a.batch}, nproc {os.cpu_count()}")
    print()
    print("| config | round | ours images/s | torchvision images/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    summary = []
    for config in a.configs.split(","):
        train = config.startswith("train")
        size = int(config[5:] if train else config[4:])
        ratios, ours_all, tv_all = [], [], []
        for r in range(a.rounds):
            # Alternate which goes first, so neither always follows the other.
            order = ["ours", "tv"] if r % 2 == 0 else ["tv", "ours"]
            got = {}
            for who in order:
                if who == "ours":
                    n, s = ours_epoch(a.bench, a.folder, train, size, a.workers, a.batch, r + 1)
                else:
                    n, s = torchvision_epoch(a.folder, train, size, a.workers, a.batch, r + 1)
                got[who] = n / s
            ratio = got["ours"] / got["tv"]
            ratios.append(ratio)
            ours_all.append(got["ours"])
            tv_all.append(got["tv"])
            print(f"| {config} | {r + 1} | {got['ours']:.0f} | {got['tv']:.0f} | {ratio:.2f} |",
                  flush=True)
        summary.append((config, statistics.median(ours_all), statistics.median(tv_all),
                        statistics.median(ratios), min(ratios), max(ratios)))
    print()
    print("| config | ours median images/s | torchvision median images/s | median ratio | range |")
    print("|---|---:|---:|---:|---|")
    for c, o, t, m, lo, hi in summary:
        print(f"| {c} | {o:.0f} | {t:.0f} | **{m:.2f}** | {lo:.2f}-{hi:.2f} |")


if __name__ == "__main__":
    main()
