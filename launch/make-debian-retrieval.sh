#!/usr/bin/env bash
# Makes a real retrieval data set from Debian's package descriptions, for sentence-embedding
# training (train --task embedding): find a package's long description from its one-line synopsis.
#   launch/make-debian-retrieval.sh OUTDIR [--negatives]   # -> OUTDIR/{train,valid,test}.jsonl
# Source: apt's package lists and their English descriptions (Translation-en), fetched with
# `apt-get update` into a private lists folder (the system's apt state is not touched; containers
# often fetch no translations). The packages of the 12 sections of make-debian-dataset.sh. Each
# record: {"anchor": synopsis, "positive": long description (paragraph marks dropped, whitespace
# collapsed), "package": name}. A package whose synopsis or long description equals an earlier
# one's (by name) is left out, so no text is twice in the data (no false in-batch negatives,
# nothing shared between splits). Split by the SHA-256 of the source package's name modulo 10 as
# make-debian-dataset.sh (0 test, 1 valid, else train): no source package is in two splits.
# --negatives adds "negative": the long description of another package of the same section and
# split, from another source package (chosen by a hash of the two names: the same every time).
set -euo pipefail
out=${1:?usage: launch/make-debian-retrieval.sh OUTDIR [--negatives]}
negatives=${2:-}
[[ -z "$negatives" || "$negatives" == --negatives ]] || { echo "make-debian-retrieval: unknown option $negatives (only --negatives)" >&2; exit 2; }
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
mkdir -p "$lists/partial" "$out"
chmod 755 "$lists"; chown _apt "$lists/partial" 2>/dev/null || true  # apt downloads as _apt
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq -o Dir::State::Lists="$lists" -o Acquire::Languages=en
shopt -s nullglob
translations=("$lists"/*_main_i18n_Translation-en*)
packages=("$lists"/*_main_binary-*_Packages*)
if [ ${#translations[@]} -eq 0 ] || [ ${#packages[@]} -eq 0 ]; then
    echo "make-debian-retrieval: apt fetched no Packages or Translation-en lists (see /etc/apt/sources.list*)" >&2; exit 1
fi
# Records of the binary packages, a blank line, then a marker, then the translations.
{ for f in "${packages[@]}"; do /usr/lib/apt/apt-helper cat-file "$f"; echo; done
  echo "Package: ==translations=="; echo
  for f in "${translations[@]}"; do /usr/lib/apt/apt-helper cat-file "$f"; echo; done
} | PYTHONPATH="$(dirname "$0")" python3 -c '
import hashlib, json, os, re, sys
from debian_packages import SECTIONS, bucket, records, source_of
out, with_negatives = sys.argv[1], sys.argv[2] == "--negatives"

def collapse(lines):
    return re.sub(r"\s+", " ", " ".join(l.strip() for l in lines if l.strip() != ".")).strip()

binaries, english, in_translations = {}, {}, False
for r in records(sys.stdin):
    name = r.get("Package", [""])[0]
    if name == "==translations==": in_translations = True; continue
    if in_translations:
        if "Description-en" in r: english[(name, r.get("Description-md5", [""])[0])] = r["Description-en"]
    elif name and name not in binaries and "Description" in r:
        binaries[name] = r
packages = {}
for name, r in binaries.items():
    section = r.get("Section", [""])[0].split("/")[-1]
    lines = english.get((name, r.get("Description-md5", [""])[0]))
    if section not in SECTIONS or not lines: continue
    synopsis, long = lines[0].strip(), collapse(lines[1:])
    if not synopsis or len(long.split()) < 5: continue
    packages[name] = (synopsis, long, section, source_of(r, name))
seen, rows = set(), []
for name in sorted(packages):
    synopsis, long, section, source = packages[name]
    if synopsis in seen or long in seen: continue
    seen.update((synopsis, long))
    split = bucket(source, 10)
    rows.append(dict(name=name, synopsis=synopsis, long=long, section=section, source=source,
                     split="test" if split == 0 else "valid" if split == 1 else "train"))

def key(a, b): return hashlib.sha256((a + "\0" + b).encode()).hexdigest()
groups = {}
for row in rows: groups.setdefault((row["split"], row["section"]), []).append(row)
files = {s: open(os.path.join(out, s + ".jsonl"), "w") for s in ("train", "valid", "test")}
counts = {}
for row in rows:
    record = {"anchor": row["synopsis"], "positive": row["long"], "package": row["name"]}
    if with_negatives:
        others = [o for o in groups[(row["split"], row["section"])] if o["source"] != row["source"]]
        if not others: continue
        record["negative"] = min(others, key=lambda o: key(row["name"], o["name"]))["long"]
    files[row["split"]].write(json.dumps(record, ensure_ascii=False) + "\n")
    counts[row["split"]] = counts.get(row["split"], 0) + 1
for f in files.values(): f.close()
print("make-debian-retrieval: %d train, %d valid, %d test pairs%s in %s" % (counts.get("train", 0), counts.get("valid", 0),
      counts.get("test", 0), " with hard negatives" if with_negatives else "", out))
' "$out" "$negatives"
