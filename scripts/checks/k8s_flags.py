#!/usr/bin/env python3
"""Every flag and ANATOMY_* variable a deployment sets exists in its binary.

usage: k8s_flags.py --bin-dir target/release [--compose FILE] RENDERED.yaml...

A manifest that sets a variable the binary does not know is silently
ignored at run time (clap reads only the variables it declares), so a typo
or a flag that was never added would deploy "fine" and do nothing. This
compares each container's args/command/env (and each compose service's)
with `<bin> --help` and `<bin> healthcheck --help`.
"""
import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

SERVICES = ("gateway", "business", "storage")
# Variables the scripts set for their own bookkeeping, not settings.
NOT_SETTINGS = {"ANATOMY_PROCESS"}


def help_text(bin_dir, svc):
    exe = Path(bin_dir) / svc
    if not exe.is_file():
        return None
    out = ""
    for args in (["--help"], ["healthcheck", "--help"]):
        out += subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30).stdout
    return out


def service_of(image, name=""):
    """anatomy-<svc>[:tag] → svc; else a service name the words start with."""
    m = re.search(r"anatomy-(gateway|business|storage)\b", image or "")
    if m:
        return m[1]
    return next((s for s in SERVICES if name.startswith(s)), None)


def settings(tokens, env_names):
    flags = {t.split("=", 1)[0] for t in tokens if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", t)}
    envs = {e for e in env_names if e.startswith("ANATOMY_")} - NOT_SETTINGS
    return flags | envs


def from_manifests(files):
    for f in files:
        for o in yaml.safe_load_all(Path(f).read_text()):
            if not o or o["kind"] not in ("Deployment", "StatefulSet"):
                continue
            for c in o["spec"]["template"]["spec"]["containers"]:
                svc = service_of(c.get("image"))
                if svc is None:
                    continue  # not one of ours (prometheus, a collector...)
                used = settings([str(t) for t in (c.get("command") or []) + (c.get("args") or [])],
                                [e["name"] for e in c.get("env") or []])
                yield f"{Path(f).stem} {o['kind']}/{o['metadata']['name']}", svc, used


def from_compose(path):
    doc = yaml.safe_load(Path(path).read_text()) or {}
    for name, s in (doc.get("services") or {}).items():
        svc = service_of(s.get("image"), name)
        if svc is None:
            continue  # not one of ours (a collector, prometheus...)
        tokens = []
        for key in ("entrypoint", "command"):
            v = s.get(key) or []
            tokens += shlex.split(v) if isinstance(v, str) else [str(t) for t in v]
        test = (s.get("healthcheck") or {}).get("test") or []
        tokens += shlex.split(test) if isinstance(test, str) else [str(t) for t in test]
        env = s.get("environment") or {}
        names = list(env) if isinstance(env, dict) else [str(e).split("=", 1)[0] for e in env]
        yield f"compose {name}", svc, settings(tokens, names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--compose")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    helps, failures, unknown, checked = {}, [], {}, 0
    sources = list(from_manifests(a.files))
    if a.compose and Path(a.compose).is_file():
        sources += list(from_compose(a.compose))
    for where, svc, used in sources:
        if svc is None:
            failures.append(f"FAIL {where}: cannot tell which binary it runs")
            continue
        if svc not in helps:
            helps[svc] = help_text(a.bin_dir, svc)
        if helps[svc] is None:
            failures.append(f"FAIL no binary {a.bin_dir}/{svc} (build it first)")
            continue
        for s in sorted(used):
            checked += 1
            if not re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", helps[svc]):
                unknown.setdefault((svc, s), []).append(where)
    # The same setting shows up in many renders: report it once per binary.
    for (svc, s), wheres in sorted(unknown.items()):
        more = f" and {len(wheres) - 1} more" if len(wheres) > 1 else ""
        failures.append(f"FAIL {s} is not in `{svc} --help` (set by {wheres[0]}{more})")
    for line in dict.fromkeys(failures):
        print(line)
    print(f"{checked} settings checked against --help, {len(unknown)} unknown")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
