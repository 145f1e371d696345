#!/usr/bin/env bash
# Makes an unlabelled domain corpus from Debian's package descriptions for masked-language
# modelling (domain adaptation before the task of launch/make-debian-dataset.sh):
#   launch/make-debian-corpus.sh OUTDIR     # -> OUTDIR/domain.txt, OUTDIR/domain-valid.txt
# One description per line (short and long joined as make-debian-dataset.sh joins them): every
# package *outside* the task's 12 sections, and nothing from a source package that has any
# example in the task's validation or test split (so no text the task is evaluated on leaks into
# adaptation). 1 in 20 source packages (by the SHA-256 of the source name) is held out as
# domain-valid.txt, for the validation perplexity.
set -euo pipefail
out=${1:?usage: launch/make-debian-corpus.sh OUTDIR}
mkdir -p "$out"
"$(dirname "$0")/apt-packages.sh" | PYTHONPATH="$(dirname "$0")" python3 -c '
import os, sys
from debian_packages import SECTIONS, bucket, description, records, source_of
out = sys.argv[1]

seen, packages, evaluated_sources = set(), [], set()
for r in records(sys.stdin):
    name = r.get("Package", [""])[0]
    if not name or name in seen or "Description" not in r: continue
    seen.add(name)
    section = r.get("Section", [""])[0].split("/")[-1]
    source = source_of(r, name)
    if section in SECTIONS:
        # The task splits by the same hash (make-debian-dataset.sh): 0 test, 1 valid.
        if bucket(source, 10) in (0, 1): evaluated_sources.add(source)
    else:
        packages.append((name, source, description(r["Description"])))
packages.sort()
kept = [(n, s, d) for n, s, d in packages if s not in evaluated_sources and d]
with open(os.path.join(out, "domain.txt"), "w") as train, open(os.path.join(out, "domain-valid.txt"), "w") as valid:
    for n, s, d in kept:
        (valid if bucket(s, 20) == 0 else train).write(d + "\n")
held = sum(1 for _, s, _ in kept if bucket(s, 20) == 0)
print("make-debian-corpus: %d descriptions (%d held out for validation) of packages outside the task sections; %d left out as their source has task validation or test examples; in %s"
      % (len(kept) - held, held, len(packages) - len(kept), out))
' "$out"
