#!/usr/bin/python3
"""Reproducible byte-level training / evaluation data from Debian main packages.

Run from the repository root:

    /usr/bin/python3 train/data/build_data.py [--out data] [--debs DIR] [--check]

Training text: reST sources of the Linux and Python documentation, and the .py files of the Python
3.11 standard library. Evaluation text (never training text): GNU Info manuals, Go source files.

Inputs: .deb files fetched with `apt-get download PKG=VERSION` into DIR (default OUT/debs), at the
versions (and sha256) in train/data/debs.lock.json, those the bundled models were trained on
(`--unpinned`: the newest); a .deb already there is reused, so the same .debs always give
byte-identical outputs. Nothing else is read from the
network or from the installed system.

Outputs (OUT, default `data/`):
  train.u16      little-endian uint16 tokens; per document BOS(256) + UTF-8 bytes + EOS(257)
  val.u16        the same for a deterministic ~1% of the documents (at least 300K tokens)
  documents.tsv  split, position, document id, tokens, sha256 of the document bytes
  eval/<manual>.txt  whole GNU Info manuals (cleaned), >= 128,000 characters each
  eval-go/<path-with-dashes>.txt  12 long hand-written Go source files (golang-1.19-src), as shipped
  manifest.json  .debs used (package, version, sha256), every output (sha256, bytes, sizes), seed

`--check` only verifies an existing OUT (the build always runs the same checks at its end).
Stdlib + numpy only.
"""

import argparse
import functools
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import time

import numpy as np

SEED = 20250520
BOS, EOS, VOCAB = 256, 257, 258
VAL_FRACTION = 0.01
VAL_MIN_TOKENS = 300_000
EVAL_MIN_CHARS = 128_000

# Training text: reST sources of two Sphinx documentation trees.
TRAIN_SOURCES = [
    # (name, package, path prefix inside the .deb, excluded subtree)
    ("linux", "linux-doc-6.1", "usr/share/doc/linux-doc-6.1/html/_sources/", "translations/"),
    ("python", "python3.11-doc", "usr/share/doc/python3.11/html/_sources/", None),
]
# Training code: the .py files of Python 3.11's standard library (one source, two packages). Files in
# a directory named like this (at any depth: test/, idlelib/idle_test/, lib2to3/tests/, ...) are not
# training text.
PYSTDLIB = "pystdlib"
PYSTDLIB_PACKAGES = ["libpython3.11-minimal", "libpython3.11-stdlib"]
PYSTDLIB_PREFIX = "usr/lib/python3.11/"
PYSTDLIB_EXCLUDED_DIRS = ("test", "tests", "idle_test", "site-packages", "dist-packages")
SOURCE_NAMES = [name for name, _, _, _ in TRAIN_SOURCES] + [PYSTDLIB]

# Long-document evaluation: the GNU Info manuals of these packages (all Debian main).
EVAL_PACKAGES = [
    "bash-doc", "zsh-doc", "autoconf-doc", "binutils-doc", "gnu-standards",
    # the owners of /usr/share/info/* on the machine this was written on (dpkg -S)
    "bc", "bzip2-doc", "coreutils", "diffutils", "ed", "findutils", "gettext", "gnupg", "grep", "gzip",
    "libffi-dev", "libgpg-error-dev", "libtasn1-doc", "nettle-dev", "readline-common", "sed", "time",
    "wget",
]
INFO_PREFIX = "usr/share/info/"
# Never evaluation text: the Python manual is training text (python3.11-doc ships python3.11.info).
FORBIDDEN_EVAL_PACKAGES = {"python3.11-doc"}
FORBIDDEN_EVAL_NAME = re.compile(r"python", re.I)

# Code evaluation: long hand-written Go source files (not training text).
EVAL_GO_PACKAGE = "golang-1.19-src"
EVAL_GO_ROOT = "usr/share/go-1.19/"  # ids are "go:" + the path below it, e.g. go:src/net/http/server.go
EVAL_GO_PREFIX = "src/"
EVAL_GO_EXCLUDED = ("testdata/", "vendor/")  # anywhere in the path
EVAL_GO_GENERATED = (b"Code generated", b"DO NOT EDIT")  # in the first EVAL_GO_HEAD bytes
EVAL_GO_HEAD = 2000
EVAL_GO_MIN_BYTES = 48_000
EVAL_GO_COUNT = 12

INDEX_NODE = re.compile(r"\b(index|indexes|indices)$", re.I)  # "Concept Index", "Indexes", ...
INDEX_MARKER = "\x00\x08[index\x00\x08]"
LICENSE_NODE = re.compile(  # licence texts (not nodes that discuss licensing, e.g. "License Notices")
    r"^(copying|copying this manual|copying conditions|copying information|library copying|licen[cs]es?"
    r"|copyright|gnu (free documentation|general public|lesser general public|library general public) "
    r"licen[cs]e|gnu (gpl|lgpl|fdl))$", re.I)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
INFO_CONSTRUCT = re.compile("\x00\x08\\[.*?\x00\x08\\]", re.S)  # index / image markers
NODE_NAME = re.compile(r"Node:[ \t]*(\x7f[^\x7f]*\x7f|[^,\t\n]*)")


def log(*a):
    print(*a, flush=True)


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# .deb handling


def deb_field(path, field):
    return subprocess.run(["dpkg-deb", "-f", path, field], check=True, capture_output=True,
                          text=True).stdout.strip()


def compare_versions(a, b):
    if a == b:
        return 0
    lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
    return -1 if lt else 1


LOCK_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "debs.lock.json")


def read_lock():
    """{package: (version, sha256)}: the .debs the bundled models were trained and evaluated on."""
    with open(LOCK_PATH) as f:
        lock = json.load(f)
    return {p: (v, lock["sha256"][p]) for p, v in lock["debs"].items()}


def get_deb(pkg, debs_dir, pin=None):
    """The cached .deb of `pkg`, downloaded if absent: exactly `pin` = (version, sha256) when given
    (Debian's security updates replace packages, and the newest would build other data than the
    models were trained on), else the highest version there."""
    def cached():
        out = []
        for path in glob.glob(os.path.join(debs_dir, glob.escape(pkg) + "_*.deb")):
            if deb_field(path, "Package") == pkg:
                out.append((deb_field(path, "Version"), path))
        return out

    found = cached()
    if pin is not None:
        found = [f for f in found if f[0] == pin[0]]
    if not found:
        spec = pkg if pin is None else f"{pkg}={pin[0]}"
        log(f"apt-get download {spec}")
        os.makedirs(debs_dir, exist_ok=True)
        if subprocess.run(["apt-get", "download", spec], cwd=debs_dir).returncode != 0:
            raise SystemExit(f"apt-get download {spec} failed"
                             + ("" if pin is None else
                                f": the archive no longer holds the version in {LOCK_PATH}; "
                                "--unpinned builds from the newest versions (other data than the "
                                "bundled models were trained on)"))
        found = [f for f in cached() if pin is None or f[0] == pin[0]]
        if not found:
            raise SystemExit(f"apt-get download {spec} left no .deb in {debs_dir}")
    found.sort(key=functools.cmp_to_key(lambda x, y: compare_versions(x[0], y[0])))
    version, path = found[-1]
    digest = sha256_file(path)
    if pin is not None and digest != pin[1]:
        raise SystemExit(f"{path}: sha256 {digest} is not the pinned {pin[1]} ({LOCK_PATH})")
    return {"package": pkg, "version": version, "file": os.path.basename(path), "path": path,
            "sha256": digest, "bytes": os.path.getsize(path)}


def deb_members(path, prefix):
    """{relative path: bytes} of the regular files under `prefix` in the .deb's data archive.

    Symlinks and other non-regular members are returned in the second dict (path -> target)."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", path], stdout=subprocess.PIPE)
    files, links = {}, {}
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for m in tar:
            name = m.name[2:] if m.name.startswith("./") else m.name.lstrip("/")
            if not name.startswith(prefix) or m.isdir():
                continue
            rel = name[len(prefix):]
            if m.isfile():
                files[rel] = tar.extractfile(m).read()
            else:
                links[rel] = m.linkname
    if proc.wait() != 0:
        raise SystemExit(f"dpkg-deb --fsys-tarfile {path} failed")
    return files, links


# ----------------------------------------------------------------------------------------------------
# Training text


def pystdlib_excluded(rel):
    """True for a path inside one of the excluded directories (test/, tests/, site-packages/, ...)."""
    return any(d in PYSTDLIB_EXCLUDED_DIRS for d in rel.split("/")[:-1])


def load_pystdlib(debs):
    """{path relative to /usr/lib/python3.11/: bytes} of the regular .py files of both packages."""
    files, per_pkg = {}, {}
    for pkg in PYSTDLIB_PACKAGES:
        members, links = deb_members(debs[pkg]["path"], PYSTDLIB_PREFIX)
        py = {r: b for r, b in members.items() if r.endswith(".py")}
        both = sorted(set(py) & set(files))
        if both:
            raise SystemExit(f"{pkg} and another package both ship {both[:3]}")
        files.update(py)
        per_pkg[pkg] = {"files": len(members), "py_files": len(py),
                        "py_symlinks_skipped": sorted(r for r in links if r.endswith(".py"))}
    return files, per_pkg


def load_training_docs(debs):
    """Sorted list of (doc id, bytes) and some statistics."""
    docs, stats, raw = [], {}, {}
    files, per_pkg = load_pystdlib(debs)
    raw[PYSTDLIB] = files
    n_excl = n_empty = 0
    not_utf8 = []
    for rel in sorted(files):
        data = files[rel]
        if pystdlib_excluded(rel):
            n_excl += 1
            continue
        if not data.strip():
            n_empty += 1
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8.append(rel)
            continue
        docs.append((f"{PYSTDLIB}:{rel}", data))
    stats[PYSTDLIB] = {"files": len(files), "excluded": n_excl, "empty": n_empty,
                       "not_utf8_skipped": len(not_utf8), "not_utf8_files": not_utf8,
                       "symlinks_skipped": sum(len(p["py_symlinks_skipped"]) for p in per_pkg.values()),
                       "packages": per_pkg}
    for name, pkg, prefix, exclude in TRAIN_SOURCES:
        files, links = deb_members(debs[pkg]["path"], prefix)
        raw[name] = files
        n_excl = n_empty = 0
        for rel in sorted(files):
            if exclude and (rel.startswith(exclude) or ("/" + exclude) in rel):
                n_excl += 1
                continue
            if not (rel.endswith(".txt") or rel.endswith(".txt.gz") or rel.endswith(".rst")
                    or rel.endswith(".rst.gz")):
                continue
            data = files[rel]
            if rel.endswith(".gz"):
                data = gzip.decompress(data)
                rel = rel[:-3]
            if not data.strip():
                n_empty += 1
                continue
            docs.append((f"{name}:{rel}", data))
        stats[name] = {"files": len(files), "symlinks_skipped": len(links), "excluded": n_excl,
                       "empty": n_empty}
    docs.sort(key=lambda d: d[0])
    return docs, stats, raw


def shuffle_key(doc_id):
    return hashlib.sha256(f"{SEED}:{doc_id}".encode()).digest()


def encode_docs(docs):
    """uint16 stream BOS + bytes + EOS per document."""
    total = sum(len(b) + 2 for _, b in docs)
    out = np.empty(total, dtype="<u2")
    pos = 0
    for _, b in docs:
        out[pos] = BOS
        out[pos + 1:pos + 1 + len(b)] = np.frombuffer(b, dtype=np.uint8)
        out[pos + 1 + len(b)] = EOS
        pos += len(b) + 2
    return out


def chars(b):
    return len(b.decode("utf-8", errors="replace"))


# ----------------------------------------------------------------------------------------------------
# GNU Info manuals


INFO_FILE = re.compile(r"^(?P<manual>.+?)\.info(?:-(?P<part>\d+))?(?:\.gz)?$")


def info_decode(raw):
    m = re.search(rb"Local Variables:\s*\ncoding:\s*([\w-]+)", raw)
    enc = m.group(1).decode() if m else "utf-8"
    try:
        return raw.decode(enc), enc
    except (UnicodeDecodeError, LookupError):
        return raw.decode("utf-8", errors="replace"), enc + "?"


def clean_info(parts):
    """parts: list of decoded texts (main file first, then -1, -2, ...). Returns (text, report)."""
    kept, dropped_index, dropped_license = [], [], []
    for text in parts:
        segments = text.split("\x1f")
        for seg in segments[1:]:  # segments[0] is the file preamble
            seg = seg.lstrip("\n")
            header, _, body = seg.partition("\n")
            if not header.startswith("File:") or "Node:" not in header:
                continue  # Indirect:, Tag Table:, End Tag Table, Local Variables
            m = NODE_NAME.search(header)
            name = m.group(1).strip("\x7f").strip() if m else ""
            if INDEX_NODE.search(name) or INDEX_MARKER in body:
                dropped_index.append(name)
                continue
            if LICENSE_NODE.match(name):
                dropped_license.append(name)
                continue
            body = INFO_CONSTRUCT.sub("", body)
            body = CONTROL.sub("", body)
            body = "\n".join(line.rstrip() for line in body.split("\n")).strip("\n")
            if body:
                kept.append(body)
    return "\n\n".join(kept) + "\n", {"nodes": len(kept), "dropped_index": dropped_index,
                                      "dropped_license": dropped_license}


def load_eval_manuals(debs):
    """{manual: (text, info)} for all manuals (no size filter yet)."""
    manuals = {}
    for pkg in EVAL_PACKAGES:
        assert pkg not in FORBIDDEN_EVAL_PACKAGES
        files, _links = deb_members(debs[pkg]["path"], INFO_PREFIX)
        groups = {}
        for rel, data in files.items():
            m = INFO_FILE.match(rel)
            if not m or "/" in rel:
                continue
            if rel.endswith(".gz"):
                data = gzip.decompress(data)
            groups.setdefault(m.group("manual"), []).append((int(m.group("part") or 0), rel, data))
        for manual, group in sorted(groups.items()):
            if FORBIDDEN_EVAL_NAME.search(manual):
                continue
            group.sort(key=lambda g: g[0])
            decoded = [info_decode(d) for _, _, d in group]
            text, rep = clean_info([t for t, _ in decoded])
            if manual in manuals:
                raise SystemExit(f"two packages ship the Info manual {manual}")
            manuals[manual] = (text, {"package": pkg, "files": [r for _, r, _ in group],
                                      "encoding": sorted({e for _, e in decoded}), **rep})
    return manuals


def python_info_samples(debs, n=40, length=200):
    """Samples of the cleaned Python Info manual (training text; must not be in the eval set)."""
    files, _ = deb_members(debs["python3.11-doc"]["path"], INFO_PREFIX)
    parts = []
    for rel in sorted(files):
        if INFO_FILE.match(rel) and FORBIDDEN_EVAL_NAME.search(rel):
            data = gzip.decompress(files[rel]) if rel.endswith(".gz") else files[rel]
            parts.append(info_decode(data)[0])
    if not parts:
        return []
    text, _ = clean_info(parts)
    return text_samples(text, n, length)


# ----------------------------------------------------------------------------------------------------
# Go source files


def eval_go_name(doc_id):
    """go:src/net/http/server.go -> src-net-http-server.go.txt"""
    return doc_id.split(":", 1)[1].replace("/", "-") + ".txt"


def load_eval_go(debs):
    """The EVAL_GO_COUNT selected files as [(doc id, text)], and the filter counts."""
    files, links = deb_members(debs[EVAL_GO_PACKAGE]["path"], EVAL_GO_ROOT + EVAL_GO_PREFIX)
    st = {"files": len(files), "symlinks": len(links), "go_files": 0, "test_files": 0,
          "testdata_or_vendor": 0, "generated": 0, "not_utf8": 0, "too_small": 0,
          "crlf_converted": 0, "candidates": 0}
    cands = []
    for rel in sorted(files):
        path = EVAL_GO_PREFIX + rel
        if not rel.endswith(".go"):
            continue
        st["go_files"] += 1
        data = files[rel]
        if rel.endswith("_test.go"):
            st["test_files"] += 1
            continue
        if any(x in path for x in EVAL_GO_EXCLUDED):
            st["testdata_or_vendor"] += 1
            continue
        if any(g in data[:EVAL_GO_HEAD] for g in EVAL_GO_GENERATED):
            st["generated"] += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            st["not_utf8"] += 1
            continue
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
            st["crlf_converted"] += 1
        if len(text.encode("utf-8")) < EVAL_GO_MIN_BYTES:
            st["too_small"] += 1
            continue
        cands.append((shuffle_key("go:" + path), "go:" + path, text))
    st["candidates"] = len(cands)
    cands.sort()
    selected = [(doc_id, text) for _, doc_id, text in cands[:EVAL_GO_COUNT]]
    names = [eval_go_name(d) for d, _ in selected]
    assert len(set(names)) == len(names), "two eval-go files map to one file name"
    return selected, st


def text_samples(text, n, length):
    """n deterministic samples of `length` characters, starting at line starts, not mostly blank."""
    out = []
    if len(text) < 2 * length:
        return out
    for i in range(n):
        pos = (len(text) - 2 * length) * (2 * i + 1) // (2 * n)
        nl = text.find("\n", pos)
        start = nl + 1 if 0 <= nl < pos + length else pos
        s = text[start:start + length]
        if len(s.split()) >= 10:
            out.append(s)
    return out


# ----------------------------------------------------------------------------------------------------
# Checks


def split_stream(tokens):
    """(starts, ends) of the documents in a token stream; asserts the BOS ... EOS structure."""
    tokens = np.asarray(tokens)
    assert tokens.size == 0 or (int(tokens.min()) >= 0 and int(tokens.max()) < VOCAB), "token range"
    bos = np.flatnonzero(tokens == BOS)
    eos = np.flatnonzero(tokens == EOS)
    assert len(bos) == len(eos), "BOS/EOS count"
    assert len(bos) == 0 or (bos[0] == 0 and eos[-1] == len(tokens) - 1), "stream edges"
    assert np.all(bos < eos) and np.all(bos[1:] == eos[:-1] + 1), "BOS/EOS nesting"
    return bos + 1, eos


def check(out_dir, debs_dir, extracted=None):
    """Verifies the outputs in out_dir. `extracted` reuses the build's in-memory inputs."""
    t0 = time.time()
    man = json.load(open(os.path.join(out_dir, "manifest.json")))
    for rel, info in man["outputs"].items():
        path = os.path.join(out_dir, rel)
        assert os.path.getsize(path) == info["bytes"], f"{rel}: size"
        assert sha256_file(path) == info["sha256"], f"{rel}: sha256 differs from manifest"
    assert man["seed"] == SEED
    streams, doc_hashes = {}, {}
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out_dir, "documents.tsv"))][1:]
    for split in ("train", "val"):
        tokens = np.fromfile(os.path.join(out_dir, f"{split}.u16"), dtype="<u2")
        starts, ends = split_stream(tokens)
        listed = [r for r in rows if r[0] == split]
        assert len(listed) == len(starts), f"{split}: documents.tsv count"
        raw = tokens.astype(np.uint8).tobytes()  # BOS/EOS become 0/1, never a whole doc's bytes
        hashes = set()
        for r, s, e in zip(listed, starts, ends):
            doc = raw[s:e]
            assert int(r[3]) == e - s + 2, f"{split}: {r[2]} length"
            assert sha256_bytes(doc) == r[4], f"{split}: {r[2]} sha256"
            assert not r[2].startswith("linux:translations/") and "/translations/" not in r[2], r[2]
            source, _, rel = r[2].partition(":")
            assert source in SOURCE_NAMES, f"{split}: unknown source of {r[2]}"
            if source == PYSTDLIB:
                assert rel.endswith(".py") and not pystdlib_excluded(rel), f"{split}: {r[2]}"
            hashes.add(r[4])
        streams[split], doc_hashes[split] = raw, hashes
        assert len(tokens) == man["outputs"][f"{split}.u16"]["tokens"]
    assert not doc_hashes["train"] & doc_hashes["val"], "a document is in both train and val"
    assert len(streams["val"]) >= VAL_MIN_TOKENS, "val too small"

    if extracted is None:
        debs = {d["package"]: {**d, "path": os.path.join(debs_dir, d["file"])} for d in man["debs"]}
        for d in debs.values():
            assert sha256_file(d["path"]) == d["sha256"], f"{d['file']} changed"
        extracted = {"debs": debs}
    debs = extracted["debs"]

    # translations/ content is not training text (unless an identical file exists outside it)
    _, linux_pkg, prefix, exclude = TRAIN_SOURCES[0]
    files = extracted.get("linux_files")
    if files is None:
        files, _ = deb_members(debs[linux_pkg]["path"], prefix)
    kept = {sha256_bytes(gzip.decompress(b) if r.endswith(".gz") else b)
            for r, b in files.items() if not r.startswith(exclude)}
    n_tr = 0
    for rel, b in files.items():
        if rel.startswith(exclude):
            h = sha256_bytes(gzip.decompress(b) if rel.endswith(".gz") else b)
            n_tr += 1
            if h not in kept:
                assert h not in doc_hashes["train"] and h not in doc_hashes["val"], rel
    assert n_tr > 0, "no translations/ files seen: is the exclusion path right?"

    # the standard library's test/ (and other excluded) files are not training text (by content,
    # unless an identical file exists outside them)
    files = extracted.get("pystdlib_files")
    if files is None:
        files, _ = load_pystdlib(debs)
    kept = {sha256_bytes(b) for r, b in files.items() if not pystdlib_excluded(r)}
    n_py_excl = 0
    for rel, b in files.items():
        if pystdlib_excluded(rel):
            n_py_excl += 1
            h = sha256_bytes(b)
            if h not in kept:
                assert h not in doc_hashes["train"] and h not in doc_hashes["val"], rel
    assert n_py_excl > 0, "no python3.11 test/ files seen: is the exclusion rule right?"

    # eval: no Python manual, nothing verbatim in training, sizes as in the manifest
    train_all = streams["train"] + streams["val"]
    eval_texts = {}
    for manual, info in man["eval"].items():
        assert not FORBIDDEN_EVAL_NAME.search(manual), manual
        assert info["package"] not in FORBIDDEN_EVAL_PACKAGES, manual
        text = open(os.path.join(out_dir, "eval", manual + ".txt"), encoding="utf-8").read()
        assert len(text) == info["characters"] >= EVAL_MIN_CHARS, manual
        assert not CONTROL.search(text), f"{manual}: control characters"
        eval_texts[manual] = text
        samples = text_samples(text, 8, 200)
        assert len(samples) >= 4, manual
        for s in samples:
            assert s.encode() not in train_all, f"{manual}: eval text found in training: {s[:80]!r}"
    py = python_info_samples(debs)
    assert py, "python3.11-doc has no Info manual to check against"
    for s in py:
        for manual, text in eval_texts.items():
            assert s not in text, f"{manual} contains Python manual text"

    # eval-go: the rule's selection, the files as in the manifest, nothing verbatim in training
    go = extracted.get("eval_go")
    if go is None:
        go, _ = load_eval_go(debs)
    assert [d for d, _ in go] == [e["id"] for e in man["eval_go"]], "eval-go selection differs"
    assert len(go) == EVAL_GO_COUNT, "eval-go: too few files"
    names = set()
    for e, (doc_id, src_text) in zip(man["eval_go"], go):
        path = doc_id.split(":", 1)[1]
        assert path.startswith(EVAL_GO_PREFIX) and path.endswith(".go"), doc_id
        assert not path.endswith("_test.go") and not any(x in path for x in EVAL_GO_EXCLUDED), doc_id
        rel = "eval-go/" + e["file"]
        assert e["file"] == eval_go_name(doc_id) and rel in man["outputs"], doc_id
        names.add(e["file"])
        data = open(os.path.join(out_dir, rel), "rb").read()
        assert sha256_bytes(data) == e["sha256"] == sha256_bytes(src_text.encode()), f"{rel}: sha256"
        assert len(data) == e["bytes"] >= EVAL_GO_MIN_BYTES, f"{rel}: size"
        assert not any(g in data[:EVAL_GO_HEAD] for g in EVAL_GO_GENERATED), f"{rel}: generated"
        text = data.decode("utf-8")
        assert "\r\n" not in text, f"{rel}: CRLF"
        samples = text_samples(text, 8, 200)
        assert len(samples) >= 4, rel
        for s in samples:
            assert s.encode() not in train_all, f"{rel}: eval text found in training: {s[:80]!r}"
    listed = set(os.listdir(os.path.join(out_dir, "eval-go")))
    assert listed == names, f"eval-go/: unexpected files {sorted(listed - names)}"
    log(f"check: OK ({len(doc_hashes['train'])} train + {len(doc_hashes['val'])} val documents, "
        f"{len(eval_texts)} eval manuals, {len(names)} eval-go files, {n_tr} translations/ files, "
        f"{n_py_excl} python3.11 test files and {len(py)} python.info samples checked, "
        f"{time.time() - t0:.1f} s)")


# ----------------------------------------------------------------------------------------------------
# Build


def write_bytes(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build(out_dir, debs_dir, pinned=True):
    t0 = time.time()
    lock = read_lock() if pinned else {}
    os.makedirs(os.path.join(out_dir, "eval"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "eval-go"), exist_ok=True)
    packages = ([p for _, p, _, _ in TRAIN_SOURCES] + PYSTDLIB_PACKAGES + EVAL_PACKAGES
                + [EVAL_GO_PACKAGE] + sorted(FORBIDDEN_EVAL_PACKAGES))
    debs = {}
    for pkg in dict.fromkeys(packages):
        if pinned and pkg not in lock:
            raise SystemExit(f"{pkg} has no version in {LOCK_PATH}")
        debs[pkg] = get_deb(pkg, debs_dir, lock.get(pkg))
    log(f"{len(debs)} .debs ready ({sum(d['bytes'] for d in debs.values()) / 1e6:.1f} MB) "
        f"[{time.time() - t0:.1f} s]")

    # training documents
    docs, src_stats, raw_files = load_training_docs(debs)
    seen, unique, dups = set(), [], []
    for doc_id, data in docs:
        h = sha256_bytes(data)
        if h in seen:
            dups.append(doc_id)
            continue
        seen.add(h)
        unique.append((doc_id, data))
    docs = sorted(unique, key=lambda d: shuffle_key(d[0]))
    total_tokens = sum(len(b) + 2 for _, b in docs)
    target = max(VAL_MIN_TOKENS, int(np.ceil(VAL_FRACTION * total_tokens)))
    n_val, val_tokens = 0, 0
    while val_tokens < target:
        val_tokens += len(docs[n_val][1]) + 2
        n_val += 1
    val_docs, train_docs = docs[:n_val], docs[n_val:]
    for name in SOURCE_NAMES:
        st = src_stats[name]
        mine = [b for d, b in docs if d.startswith(name + ":")]
        st["documents"] = len(mine)
        st["characters"] = sum(chars(b) for b in mine)
        st["tokens"] = sum(len(b) + 2 for b in mine)
        st["val_documents"] = sum(1 for d, _ in val_docs if d.startswith(name + ":"))
        st["val_tokens"] = sum(len(b) + 2 for d, b in val_docs if d.startswith(name + ":"))
        log(f"{name}: {st['documents']} documents, {st['characters']:,} characters, "
            f"{st['tokens']:,} tokens ({st['val_documents']} documents / {st['val_tokens']:,} tokens "
            f"in val; {st['excluded']} excluded, {st['empty']} empty, {st['symlinks_skipped']} "
            f"symlinks skipped" + (f", {st['not_utf8_skipped']} not UTF-8 skipped"
                                   if "not_utf8_skipped" in st else "") + ")")
    if dups:
        log(f"{len(dups)} exact duplicate documents dropped: {', '.join(dups[:5])}"
            f"{' ...' if len(dups) > 5 else ''}")
    invalid = [d for d, b in docs if b.decode("utf-8", errors="replace").encode() != b]
    if invalid:
        log(f"{len(invalid)} documents are not valid UTF-8 (kept as raw bytes): {invalid[:5]}")

    outputs, rows = {}, ["split\tposition\tid\ttokens\tsha256"]
    for split, sdocs in (("train", train_docs), ("val", val_docs)):
        tokens = encode_docs(sdocs)
        path = os.path.join(out_dir, f"{split}.u16")
        write_bytes(path, tokens.tobytes())
        n_chars = sum(chars(b) for _, b in sdocs)
        outputs[f"{split}.u16"] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path),
                                   "tokens": int(tokens.size), "characters": n_chars,
                                   "documents": len(sdocs)}
        for i, (doc_id, b) in enumerate(sdocs):
            rows.append(f"{split}\t{i}\t{doc_id}\t{len(b) + 2}\t{sha256_bytes(b)}")
        log(f"{split}.u16: {tokens.size:,} tokens, {n_chars:,} characters, {len(sdocs)} documents")
    path = os.path.join(out_dir, "documents.tsv")
    write_bytes(path, ("\n".join(rows) + "\n").encode())
    outputs["documents.tsv"] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path),
                                "documents": len(rows) - 1}

    # evaluation manuals
    manuals = load_eval_manuals(debs)
    eval_info, skipped = {}, {}
    for f in glob.glob(os.path.join(out_dir, "eval", "*.txt")):
        os.remove(f)
    for manual, (text, info) in sorted(manuals.items()):
        if len(text) < EVAL_MIN_CHARS:
            skipped[manual] = len(text)
            continue
        rel = f"eval/{manual}.txt"
        path = os.path.join(out_dir, rel)
        write_bytes(path, text.encode("utf-8"))
        outputs[rel] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path),
                        "characters": len(text), "documents": 1}
        eval_info[manual] = {"characters": len(text), "package": info["package"],
                             "files": info["files"], "nodes": info["nodes"],
                             "dropped_index_nodes": info["dropped_index"],
                             "dropped_license_nodes": info["dropped_license"]}
        log(f"{rel}: {len(text):,} characters, {info['nodes']} nodes ({info['package']}; dropped "
            f"{len(info['dropped_index'])} index + {len(info['dropped_license'])} licence nodes)")
    log(f"eval: {len(eval_info)} manuals >= {EVAL_MIN_CHARS:,} characters, "
        f"{sum(v['characters'] for v in eval_info.values()):,} characters; too short: "
        + ", ".join(f"{m} ({n:,})" for m, n in sorted(skipped.items())))

    # evaluation Go source files
    go, go_stats = load_eval_go(debs)
    for f in glob.glob(os.path.join(out_dir, "eval-go", "*")):
        os.remove(f)
    eval_go = []
    for rank, (doc_id, text) in enumerate(go):
        name = eval_go_name(doc_id)
        rel = f"eval-go/{name}"
        path = os.path.join(out_dir, rel)
        write_bytes(path, text.encode("utf-8"))
        outputs[rel] = {"sha256": sha256_file(path), "bytes": os.path.getsize(path),
                        "characters": len(text), "documents": 1}
        eval_go.append({"id": doc_id, "file": name, "rank": rank, "package": EVAL_GO_PACKAGE,
                        "path": "/" + EVAL_GO_ROOT + doc_id.split(":", 1)[1],
                        **{k: outputs[rel][k] for k in ("sha256", "bytes", "characters")}})
        log(f"{rel}: {outputs[rel]['bytes']:,} bytes, {len(text):,} characters")
    log(f"eval-go: {len(eval_go)} of {go_stats['candidates']} candidate files "
        f"(>= {EVAL_GO_MIN_BYTES:,} bytes), {sum(e['bytes'] for e in eval_go):,} bytes; "
        f"{go_stats['go_files']} .go files, {go_stats['test_files']} _test.go, "
        f"{go_stats['testdata_or_vendor']} testdata/vendor, {go_stats['generated']} generated, "
        f"{go_stats['not_utf8']} not UTF-8, {go_stats['too_small']} too small")

    manifest = {
        "seed": SEED,
        "tokenizer": {"type": "byte", "bos": BOS, "eos": EOS, "vocab_size": VOCAB, "dtype": "<u2",
                      "document": "BOS + UTF-8 bytes + EOS"},
        "debs": [{k: d[k] for k in ("package", "version", "file", "sha256", "bytes")}
                 for d in sorted(debs.values(), key=lambda d: d["package"])],
        "training_sources": {
            **{name: {"package": pkg, "path": "/" + prefix, "excluded": exclude, **src_stats[name]}
               for name, pkg, prefix, exclude in TRAIN_SOURCES},
            PYSTDLIB: {"package": PYSTDLIB_PACKAGES, "path": "/" + PYSTDLIB_PREFIX,
                       "excluded": "*.py in a directory named " + "/, ".join(PYSTDLIB_EXCLUDED_DIRS)
                       + "/ (any depth); not valid UTF-8; empty; symlinks", **src_stats[PYSTDLIB]},
        },
        "training_characters": sum(v["characters"] for v in src_stats.values()),
        "training_tokens": total_tokens,
        "duplicate_documents_dropped": dups,
        "val_rule": f"first documents in sha256('{SEED}:'+id) order until >= max({VAL_MIN_TOKENS}, "
                    f"ceil({VAL_FRACTION} * all tokens)); train = the rest, in the same order",
        "eval": eval_info,
        "eval_too_short": skipped,
        "eval_rule": f"GNU Info manuals from {EVAL_PACKAGES}; parts joined in order; preamble, "
                     "tag tables, node header lines, index and licence nodes, control characters "
                     f"dropped; kept if >= {EVAL_MIN_CHARS} characters",
        "eval_go": eval_go,
        "eval_go_stats": go_stats,
        "eval_go_rule": f"*.go under /{EVAL_GO_ROOT}{EVAL_GO_PREFIX} of {EVAL_GO_PACKAGE}, id 'go:' + "
                        f"path below /{EVAL_GO_ROOT}; not *_test.go, no {EVAL_GO_EXCLUDED} in the "
                        f"path, no {[g.decode() for g in EVAL_GO_GENERATED]} in the first "
                        f"{EVAL_GO_HEAD} bytes, valid UTF-8 (CRLF -> LF, otherwise as shipped), "
                        f">= {EVAL_GO_MIN_BYTES} bytes; the first {EVAL_GO_COUNT} in "
                        f"sha256('{SEED}:'+id) order",
        "outputs": outputs,
    }
    path = os.path.join(out_dir, "manifest.json")
    write_bytes(path, (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
                .encode())
    log(f"manifest.json: {len(debs)} debs, {len(outputs)} outputs, "
        f"training {manifest['training_characters']:,} characters / {total_tokens:,} tokens")
    check(out_dir, debs_dir, {"debs": debs, "linux_files": raw_files[TRAIN_SOURCES[0][0]],
                              "pystdlib_files": raw_files[PYSTDLIB], "eval_go": go})
    log(f"total time {time.time() - t0:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data")
    ap.add_argument("--debs", default=None, help="cache of .debs (default OUT/debs)")
    ap.add_argument("--check", action="store_true", help="only verify an existing build")
    ap.add_argument("--unpinned", action="store_true",
                    help="the newest .debs instead of train/data/debs.lock.json's versions")
    args = ap.parse_args()
    debs_dir = args.debs or os.path.join(args.out, "debs")
    if args.check:
        check(args.out, debs_dir)
    else:
        build(args.out, debs_dir, pinned=not args.unpinned)


if __name__ == "__main__":
    sys.exit(main())
