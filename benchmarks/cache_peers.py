"""What reading other ranks' cache files costs a rank's cache lookups.

A rank's `ResponseCache` looks a batch of keys up in its own file first, then in each peer
(read-only) for the keys still missing. Measured here, per batch of 50 keys over --rows keys:
all found in the own file (the reference), all found in the last of --peers peer files (a
re-run with another number of ranks), and none found anywhere (a fresh run: every peer is
asked in vain). Prints microseconds per key and the ratio to the reference.

    .venv/bin/python benchmarks/cache_peers.py --rows 20000 --peers 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pixtill.store.cache import ResponseCache

BATCH = 50


def _fill(path: Path, keys: list[str]) -> None:
    with ResponseCache(path) as cache:
        for key in keys:
            cache.put("step", key, [{"generation": f"answer for {key}", "model_name": "m"}])


def _per_key_us(cache: ResponseCache, keys: list[str]) -> tuple[float, int]:
    found = 0
    started = time.perf_counter()
    for start in range(0, len(keys), BATCH):
        found += len(cache.get_many("step", keys[start : start + BATCH]))
    return (time.perf_counter() - started) / len(keys) * 1e6, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--peers", type=int, default=3)
    args = parser.parse_args()
    keys = [f"key-{i:08d}" for i in range(args.rows)]
    absent = [f"absent-{i:08d}" for i in range(args.rows)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _fill(root / "own.sqlite", keys)
        peers = [root / f"peer{k}.sqlite" for k in range(args.peers)]
        for k, peer in enumerate(peers):
            _fill(peer, keys if k == args.peers - 1 else [f"other-{k}"])
        _fill(root / "empty.sqlite", ["nothing"])
        with ResponseCache(root / "own.sqlite") as own:
            reference, found = _per_key_us(own, keys)
            assert found == len(keys)
        with ResponseCache(root / "empty.sqlite", peers=peers) as rank:
            in_peer, found = _per_key_us(rank, keys)
            assert found == len(keys)
            missing, found = _per_key_us(rank, absent)
            assert found == 0
    print(f"{args.rows} keys, batches of {BATCH}, {args.peers} peer files")
    print(f"  found in own file          {reference:6.1f} us/key  (reference)")
    print(f"  found in the last peer     {in_peer:6.1f} us/key  {in_peer / reference:.2f}x")
    nowhere = f"found nowhere ({args.peers + 1} files)"
    print(f"  {nowhere:26} {missing:6.1f} us/key  {missing / reference:.2f}x")


if __name__ == "__main__":
    main()
