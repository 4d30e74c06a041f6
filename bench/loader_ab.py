#!/usr/bin/python3
"""Two builds of bench/loader_bench on the same folder, alternated A/B then B/A per round so that
the machine's drifting speed hits both: a loader change against its baseline.

  /usr/bin/python3 bench/loader_ab.py --a BASELINE/loader_bench --b build/bench/loader_bench \
      --folder /tmp/loader_folder [--rounds 3] [--threads 2] [--restarts 20]

Configurations: restart96 / restart224 (loader_bench --restarts: the time from dropping a loader
mid-prefetch to a new one's first batch, at scattered batches, 3 batches taken each time) and
epoch96 / epoch224 (one shuffled epoch, images/s), training transforms. Both builds must give the
same pixel checksum per configuration (the same batches), or the script stops. Prints markdown
tables: every run, then medians and the median of the per-round ratios B/A.
"""
import argparse
import json
import statistics
import subprocess
import sys

CONFIGS = {
    "restart96": (["--size", "96", "--restarts"], "restart_ms_median", "ms to the first batch"),
    "restart224": (["--size", "224", "--restarts"], "restart_ms_median", "ms to the first batch"),
    "epoch96": (["--size", "96"], "images_per_s", "images/s"),
    "epoch224": (["--size", "224"], "images_per_s", "images/s"),
}


def run(binary, folder, threads, restarts, config):
    flags, _, _ = CONFIGS[config]
    args = [binary, "--folder", folder, "--threads", str(threads)] + flags
    if flags[-1] == "--restarts":
        args.append(str(restarts))
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True, help="baseline loader_bench")
    p.add_argument("--b", required=True, help="changed loader_bench")
    p.add_argument("--folder", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--restarts", type=int, default=20)
    p.add_argument("--configs", default=",".join(CONFIGS))
    args = p.parse_args()
    configs = args.configs.split(",")
    rows = []
    print("| config | round | A | B | B/A |")
    print("|---|---:|---:|---:|---:|")
    for config in configs:
        key = CONFIGS[config][1]
        for r in range(args.rounds):
            order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
            got = {}
            for side in order:
                got[side] = run(getattr(args, side), args.folder, args.threads, args.restarts,
                                config)
            if abs(got["a"]["checksum"] - got["b"]["checksum"]) > 1e-3:
                sys.exit(f"{config}: the builds' batches differ (checksums "
                         f"{got['a']['checksum']} and {got['b']['checksum']})")
            a, b = got["a"][key], got["b"][key]
            rows.append((config, a, b))
            print(f"| {config} | {r + 1} | {a:.1f} | {b:.1f} | {b / a:.2f} |", flush=True)
    print()
    print("| config | unit | A median | B median | median B/A | range B/A |")
    print("|---|---|---:|---:|---:|---|")
    for config in configs:
        mine = [(a, b) for c, a, b in rows if c == config]
        ratios = [b / a for a, b in mine]
        print(f"| {config} | {CONFIGS[config][2]} | {statistics.median(a for a, _ in mine):.1f} | "
              f"{statistics.median(b for _, b in mine):.1f} | {statistics.median(ratios):.2f} | "
              f"{min(ratios):.2f}-{max(ratios):.2f} |")


if __name__ == "__main__":
    main()
