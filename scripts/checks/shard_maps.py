#!/usr/bin/env python3
"""The shard map files the deployments ship, checked as storage checks them.

usage: shard_maps.py [--adds BASE NEW]... MAP...

Each MAP is a shard map: a TOML file (deploy/compose/shard-map.toml) or a
YAML file holding a ConfigMap `shard-map` with the key shard-map.toml
(k8s/base/storage/shard-map.yaml, or a patch of it). The rules are
crates/storage-api/src/shard_map.rs's ShardMap::validate: ids 0, 1, 2, ...
in order, contiguous slot ranges from 0 to `slots` (a range may be empty:
slot_end = slot_start, a shard that starts owning nothing), replica ids
1..n, no address twice. `--adds BASE NEW` (both also checked) says NEW is
BASE plus shards appended with empty ranges at the end: what adding a shard
to a running cluster needs (docs/partitioning.md). Prints one FAIL line per
broken rule and exits 1 if there is any.
"""
import argparse
import sys
import tomllib
from pathlib import Path

import yaml

failures = []


def fail(where, msg):
    failures.append(f"FAIL {where}: {msg}")


def load(path):
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        cms = [o for o in yaml.safe_load_all(text) if o and o.get("kind") == "ConfigMap"
               and o["metadata"]["name"] == "shard-map"]
        if len(cms) != 1:
            raise ValueError("expected one ConfigMap shard-map")
        text = cms[0]["data"]["shard-map.toml"]
    return tomllib.loads(text)


def check(where, m):
    slots = m.get("slots", 1024)
    nxt, addrs = 0, set()
    for i, sh in enumerate(m.get("shards") or []):
        if sh["id"] != i:
            fail(where, f"shard ids must be 0, 1, 2, ... in order; found {sh['id']} at position {i}")
        if sh["slot_start"] != nxt or sh["slot_end"] < sh["slot_start"]:
            fail(where, f"shard {sh['id']} has slots [{sh['slot_start']}, {sh['slot_end']}), must start at {nxt}")
        nxt = sh["slot_end"]
        ids = [r["id"] for r in sh.get("replicas") or []]
        if not ids or sorted(ids) != list(range(1, len(ids) + 1)):
            fail(where, f"shard {sh['id']}: replica ids must be 1..n (has {ids})")
        for r in sh.get("replicas") or []:
            if r["addr"] in addrs:
                fail(where, f"address {r['addr']} appears twice")
            addrs.add(r["addr"])
    if not m.get("shards"):
        fail(where, "no shards")
    if nxt != slots:
        fail(where, f"the shards cover slots [0, {nxt}) but the map has {slots}")


def check_adds(base_path, new_path, base, new):
    where = f"{new_path} (adds to {base_path})"
    for k in ("version", "slots"):
        if base.get(k) != new.get(k):
            fail(where, f"{k} differs: {base.get(k)} vs {new.get(k)}")
    old, more = base.get("shards") or [], new.get("shards") or []
    if more[:len(old)] != old:
        fail(where, "the existing shards must stay exactly as they are")
    if len(more) <= len(old):
        fail(where, "adds no shard")
    slots = new.get("slots", 1024)
    for sh in more[len(old):]:
        if sh["slot_start"] != slots or sh["slot_end"] != slots:
            fail(where, f"added shard {sh['id']} must start owning nothing (slot_start = slot_end = {slots})")
        if len(sh.get("replicas") or []) != len(old[-1].get("replicas") or []):
            fail(where, f"added shard {sh['id']} should have as many replicas as the others")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--adds", nargs=2, action="append", default=[], metavar=("BASE", "NEW"))
    ap.add_argument("maps", nargs="*")
    a = ap.parse_args()
    paths = list(dict.fromkeys(a.maps + [p for pair in a.adds for p in pair]))
    maps = {}
    for p in paths:
        try:
            maps[p] = load(p)
        except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
            fail(p, f"cannot read a shard map: {e}")
            continue
        check(p, maps[p])
    for base, new in a.adds:
        if base in maps and new in maps:
            check_adds(base, new, maps[base], maps[new])
    for line in failures:
        print(line)
    print(f"{len(maps)} shard maps, {len(a.adds)} additions checked")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
