#!/usr/bin/env python3
"""Prints one line "N passed, N failed[, N skipped]" over all CTest tests of
the given JUnit files (ctest --output-junit), where each guest suite test
(guest_<suite>, with <results-dir>/<suite>.summary written by
ionest_guest_runner) counts as its KTAP cases instead of as one test.
Exit status 1 if anything failed or nothing ran.

usage: summarize-tests.py --guest-results DIR JUNIT.xml...
"""
import argparse
import os
import sys
import xml.etree.ElementTree as ET


def read_summary(path):
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0] in ("passed", "failed", "skipped"):
                counts[parts[0]] = int(parts[1])
    if set(counts) != {"passed", "failed", "skipped"}:
        raise ValueError(f"{path}: malformed summary")
    return counts


def ctest_outcome(case):
    status = case.get("status", "")
    if status == "run":
        return "passed"
    if status == "fail":
        return "failed"
    if status in ("notrun", "disabled"):
        skipped = case.find("skipped")
        message = skipped.get("message", "") if skipped is not None else ""
        # SKIP_RETURN_CODE / SKIP_REGULAR_EXPRESSION / DISABLED are real skips;
        # "Not Run" for a missing executable is a failure.
        if status == "disabled" or message.startswith("SKIP_") or "Disabled" in message:
            return "skipped"
        return "failed"
    return "failed"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guest-results", required=True)
    ap.add_argument("junit", nargs="+")
    args = ap.parse_args()
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for path in args.junit:
        if not os.path.exists(path):
            print(f"summarize-tests: {path} missing (ctest did not run)", file=sys.stderr)
            total["failed"] += 1
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            name = case.get("name", "")
            outcome = ctest_outcome(case)
            summary = None
            if name.startswith("guest_"):
                spath = os.path.join(args.guest_results, name[len("guest_"):] + ".summary")
                if os.path.exists(spath):
                    summary = read_summary(spath)
            if summary is None:
                total[outcome] += 1
                continue
            for k in total:
                total[k] += summary[k]
            if outcome == "failed" and summary["failed"] == 0:
                total["failed"] += 1  # e.g. ctest timeout after the summary was written
    line = f'{total["passed"]} passed, {total["failed"]} failed'
    if total["skipped"]:
        line += f', {total["skipped"]} skipped'
    print(line)
    return 1 if total["failed"] or total["passed"] + total["skipped"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
