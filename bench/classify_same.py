"""Does a speed change leave ``doorstep classify``'s output unchanged? Classify the same files with
two checkouts and compare the output bytes.

    PYTHONPATH=<checkout A> .venv/bin/python bench/classify_same.py --out /tmp/a
    PYTHONPATH=<checkout B> .venv/bin/python bench/classify_same.py --out /tmp/b
    .venv/bin/python bench/classify_same.py --compare /tmp/a /tmp/b

The inputs are the speed bench's 5,000 posts (``bench/classifier_bench.py --posts 5000``) and every
real tweet in $DOORSTEP_SHARED/data (TweetEval train and validation, the twcs sample, its
guide-labelled tweets, the airline tweets), each written as ``{"id", "text"}`` JSONL and run through
:func:`classifiers.jsonl.classify_jsonl` with the CLI's default batch size, as ``doorstep classify``
runs it. ``--only NAME,NAME`` runs some of them (``bench5000``, ``tweeteval_val``, ``tweeteval_train``,
``twcs_sample``, ``twcs_labelled``, ``airline``). The output of every file is kept, with its sha256
added to ``hashes.json`` as each file ends; ``--compare`` compares the files both folders hold and
names the first differing posts and fields.

Int8 dynamic quantisation makes a post's scores depend on the other posts of its model batch, so
"the same output" is only a fair test with the same inputs in the same order, which this keeps.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


def inputs(only: set[str] | None) -> dict[str, list[str]]:
    """Name -> texts of every input file (or of those in ``only``), in a fixed order."""
    from classifier_bench import sample_posts

    files: dict[str, list[str]] = {"bench5000": sample_posts(5000)[0]}
    if only is not None and only <= {"bench5000"}:
        return files
    data = Path(os.environ.get("DOORSTEP_SHARED") or REPO.parent / "shared") / "data"
    if not data.is_dir():
        raise SystemExit(f"{data}: no shared data; set DOORSTEP_SHARED or pass --only bench")
    for split in ("val", "train"):
        with (data / "tweeteval-sentiment" / f"{split}.tsv").open(encoding="utf-8", newline="") as f:
            files[f"tweeteval_{split}"] = [row["text"] for row in csv.DictReader(f, delimiter="\t")]
    with (data / "twcs-sample" / "twcs_sample.csv").open(encoding="utf-8", newline="") as f:
        files["twcs_sample"] = [row["text"] for row in csv.DictReader(f)]
    with (data / "twcs-labelled" / "twcs_labelled.jsonl").open(encoding="utf-8") as f:
        files["twcs_labelled"] = [json.loads(line)["text"] for line in f if line.strip()]
    with (data / "airline-sentiment" / "Tweets.csv").open(encoding="utf-8", newline="") as f:
        files["airline"] = [row["text"] for row in csv.DictReader(f)]
    return {name: texts for name, texts in files.items() if only is None or name in only}


def run(out: Path, model: str, only: set[str] | None) -> None:
    from classifiers import load_classifier
    from classifiers.jsonl import classify_jsonl

    out.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(model)
    hash_file = out / "hashes.json"
    hashes: dict[str, str] = json.loads(hash_file.read_text()) if hash_file.is_file() else {}
    for name, texts in inputs(only).items():
        payload = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
        buffer = io.StringIO()
        started = time.process_time()
        classify_jsonl(io.StringIO(payload), buffer, classifier)
        body = buffer.getvalue().encode("utf-8")
        (out / f"{name}.jsonl").write_bytes(body)
        hashes[name] = hashlib.sha256(body).hexdigest()
        hash_file.write_text(json.dumps(hashes, indent=1) + "\n")
        print(f"{name}: {len(texts)} posts, {time.process_time() - started:.1f} CPU-s, sha256 {hashes[name][:16]}",
              flush=True)


def compare(a: Path, b: Path) -> int:
    """0 when every file both runs wrote is byte-identical; else names the first differences."""
    ha, hb = (json.loads((d / "hashes.json").read_text()) for d in (a, b))
    bad = 0
    for name in ha.keys() - hb.keys() | hb.keys() - ha.keys():
        print(f"{name}: in one folder only, not compared")
    for name in ha:
        if name not in hb:
            continue
        if ha[name] == hb[name]:
            print(f"{name}: identical")
            continue
        bad += 1
        la = (a / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        lb = (b / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        diffs = [i for i, (x, y) in enumerate(zip(la, lb)) if x != y]
        print(f"{name}: DIFFERENT ({len(la)} vs {len(lb)} lines, {len(diffs)} lines differ)")
        for i in diffs[:5]:
            ra, rb = json.loads(la[i]), json.loads(lb[i])
            print(f"  id {ra['id']}: " + ", ".join(f"{k} {ra[k]} -> {rb[k]}" for k in ra if ra[k] != rb.get(k)))
    return 1 if bad or not ha.keys() & hb.keys() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for this checkout's outputs")
    parser.add_argument("--model", default="onnx")
    parser.add_argument("--only", default=None, help="comma-separated file names (default: all)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.out:
        parser.error("--out or --compare is needed")
    run(args.out, args.model, set(args.only.split(",")) if args.only else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
