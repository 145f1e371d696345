#!/usr/bin/env bash
# Makes a real labelled text data set from Debian's package descriptions: which section
# (games, science, sound, ...) a package belongs to, from its description.
#   launch/make-debian-dataset.sh OUTDIR        # -> OUTDIR/{train,valid,test}.jsonl
# Source: `apt-cache dumpavail` (runs `apt-get update` first when apt has no package lists).
# Each record: {"text": description, "label": section, "package": name}. The text is the short
# description joined with the long one when apt has it (continuation lines, " ." paragraph marks
# dropped, whitespace collapsed). Sections: the part after the last "/", 12 kept. One record per
# binary package. Split by the SHA-256 of the *source* package name (Source: without its version,
# else the package name) modulo 10: 0 -> test, 1 -> valid, else train, so sibling packages
# (foo, foo-data, foo-doc) never straddle splits.
set -euo pipefail
out=${1:?usage: launch/make-debian-dataset.sh OUTDIR}
mkdir -p "$out"
"$(dirname "$0")/apt-packages.sh" | PYTHONPATH="$(dirname "$0")" python3 -c '
import json, os, sys
from debian_packages import SECTIONS, bucket, description, records, source_of
out = sys.argv[1]

seen, rows = set(), []
for r in records(sys.stdin):
    name = r.get("Package", [""])[0]
    if not name or name in seen or "Description" not in r: continue
    section = r.get("Section", [""])[0].split("/")[-1]
    if section not in SECTIONS: continue
    seen.add(name)
    split = bucket(source_of(r, name), 10)
    rows.append((name, {"text": description(r["Description"]), "label": section, "package": name},
                 "test" if split == 0 else "valid" if split == 1 else "train"))
rows.sort(key=lambda x: x[0])
counts = {}
files = {s: open(os.path.join(out, s + ".jsonl"), "w") for s in ("train", "valid", "test")}
for _, rec, split in rows:
    files[split].write(json.dumps(rec, ensure_ascii=False) + "\n")
    counts[split] = counts.get(split, 0) + 1
for f in files.values(): f.close()
print("make-debian-dataset: %d train, %d valid, %d test examples in %s" % (counts.get("train", 0), counts.get("valid", 0), counts.get("test", 0), out))
' "$out"
