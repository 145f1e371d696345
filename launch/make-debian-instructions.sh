#!/usr/bin/env bash
# Makes an instruction-tuning data set for a decoder from Debian's package records: conversations
# in the chat format ({"messages": [user, assistant]}) asking
#   "Which section is package NAME in?"          -> its section (e.g. "editors"), and
#   "Describe package NAME in one line."         -> its short description (the synopsis),
# for the packages of the 12 sections of make-debian-dataset.sh. Split by the SHA-256 of the source
# package (0 -> test, 1 -> valid, else train), so sibling packages never straddle splits and the
# held-out questions are about packages the model never saw answers for.
#   launch/make-debian-instructions.sh OUTDIR [MAX_PER_SPLIT]   # -> OUTDIR/{train,valid,test}.jsonl
# MAX_PER_SPLIT (default 2000 train; valid and test a fifth of it) keeps CPU runs short: the
# packages kept are the first by SHA-256 of their name, so the subset is fixed.
set -euo pipefail
out=${1:?usage: launch/make-debian-instructions.sh OUTDIR [MAX_PER_SPLIT]}
limit=${2:-2000}
mkdir -p "$out"
"$(dirname "$0")/apt-packages.sh" | PYTHONPATH="$(dirname "$0")" python3 -c '
import hashlib, json, os, sys
from debian_packages import SECTIONS, bucket, records, source_of
out, limit = sys.argv[1], int(sys.argv[2])
seen, splits = set(), {"train": [], "valid": [], "test": []}
for r in records(sys.stdin):
    name = r.get("Package", [""])[0]
    if not name or name in seen or "Description" not in r: continue
    section = r.get("Section", [""])[0].split("/")[-1]
    if section not in SECTIONS: continue
    seen.add(name)
    synopsis = r["Description"][0].strip()
    if not synopsis: continue
    b = bucket(source_of(r, name), 10)
    splits["test" if b == 0 else "valid" if b == 1 else "train"].append((hashlib.sha256(name.encode()).hexdigest(), name, section, synopsis))
for split, rows in splits.items():
    rows.sort()
    cap = limit if split == "train" else max(1, limit // 5)
    rows = rows[: cap // 2]
    with open(os.path.join(out, split + ".jsonl"), "w", encoding="utf-8") as f:
        for _, name, section, synopsis in rows:
            for question, answer in ((f"Which section is package {name} in?", section), (f"Describe package {name} in one line.", synopsis)):
                f.write(json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}, ensure_ascii=False) + "\n")
    print(f"{split}: {2 * len(rows)} conversations about {len(rows)} packages -> {out}/{split}.jsonl")
' "$out" "$limit"
