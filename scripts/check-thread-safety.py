#!/usr/bin/env python3
"""Clang's thread-safety analysis over every C++ translation unit of a CMake build.

The lock annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...) are ignored by g++, the
project's compiler. This re-runs each compile command of <build>/compile_commands.json with
clang++ -fsyntax-only -Wthread-safety -Werror=thread-safety (no code generated), in parallel, and
fails on any finding. A deliberately wrong snippet is checked first, so a clang that does not
analyse (or flags that do not reach it) fails the check instead of passing it.

usage: check-thread-safety.py <build-dir> [--clang clang++-14] [--jobs N]
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

FLAGS = ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option"]

CANARY = r"""
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
struct Counter {
  absl::Mutex mu;
  int value ABSL_GUARDED_BY(mu) = 0;
  void Unlocked() { ++value; }  // must be reported: no lock held
};
"""


def clang_command(entry, clang):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out = [clang]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a in ("-c",) or a.startswith("-MF") or a in ("-MD", "-MT") or a.startswith("-fsanitize"):
            if a in ("-MT",):
                skip = True
            continue
        out.append(a)
    return out + FLAGS


def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--clang", default="clang++-14")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    if shutil.which(a.clang) is None:
        print(f"thread-safety: {a.clang} not found (install clang-14: scripts/setup.sh)")
        return 1
    db = os.path.join(a.build, "compile_commands.json")
    try:
        entries = [e for e in json.load(open(db)) if e["file"].endswith(".cc")]
    except OSError as e:
        print(f"thread-safety: cannot read {db}: {e} (configure the build first)")
        return 1
    if not entries:
        print("thread-safety: no C++ translation units in the build")
        return 1
    # The canary: compiled with the first unit's include paths, it must fail with the analysis.
    with tempfile.NamedTemporaryFile("w", suffix=".cc", delete=False) as f:
        f.write(CANARY)
        canary = f.name
    probe = dict(entries[0])
    cmd = clang_command(probe, a.clang)
    cmd = [c if c != probe["file"] else canary for c in cmd]
    rc, out = run(cmd, probe["directory"])
    os.unlink(canary)
    if rc == 0 or "thread-safety" not in out:
        print("thread-safety: the analysis did not reject an unguarded access; the check is not working")
        print(out)
        return 1
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futs = {pool.submit(run, clang_command(e, a.clang), e["directory"]): e["file"] for e in entries}
        for fut in concurrent.futures.as_completed(futs):
            rc, out = fut.result()
            if rc != 0:
                failures.append((futs[fut], out))
    for f, out in sorted(failures):
        print(f"--- {f}\n{out}")
    print(f"thread-safety: {len(entries)} translation units, {len(failures)} with findings")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
