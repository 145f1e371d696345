"""Reading `apt-cache dumpavail` for the Debian data scripts (make-debian-dataset.sh,
make-debian-corpus.sh): package records, descriptions as one line, and the hash split both use."""
import hashlib
import re

# The task's sections (the part of Section: after the last "/").
SECTIONS = {"games", "science", "sound", "graphics", "mail", "editors", "database", "math", "fonts", "web", "kernel", "video"}


def records(stream):
    """Each package stanza as {field: [first line, continuation lines...]}."""
    fields, last = {}, None
    for raw in stream:
        line = raw.rstrip("\n")
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t" and last:
            fields[last].append(line)
        else:
            key, _, value = line.partition(":")
            last = key
            fields[key] = [value.strip()]
    if fields:
        yield fields


def description(lines):
    """The short description joined with the long one (" ." paragraph marks dropped), whitespace collapsed."""
    short, long = lines[0], []
    for l in lines[1:]:
        l = l.strip()
        if l == ".":
            continue
        long.append(l)
    return re.sub(r"\s+", " ", " ".join([short] + long)).strip()


def source_of(record, name):
    """The source package's name (Source: without its version), else the package's own."""
    return record.get("Source", [name])[0].split(" (")[0].strip() or name


def bucket(name, n):
    """SHA-256 of the name modulo n: the task splits by source package with n = 10 (0 test, 1 valid)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % n
