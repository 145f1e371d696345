"""Checks a sentence-embedding export (train --task embedding's best/ or final/) with the Python stack:
sentence-transformers loads the folder as it is, and its embeddings of the given texts equal
`finetune-dist predict`'s within a tolerance (and its InformationRetrievalEvaluator, given pairs,
equals `finetune-dist eval`'s figures).
    FINETUNE_DIST_BIN=.build/release/finetune-dist python3 launch/check-embedding-export.py FOLDER PAIRS.jsonl [TOL]
Needs sentence-transformers (a virtualenv outside the repository); not part of the tests."""
import json, os, subprocess, sys, tempfile

import numpy as np
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

folder, pairs = sys.argv[1], sys.argv[2]
tolerance = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
binary = os.environ.get("FINETUNE_DIST_BIN", ".build/release/finetune-dist")
rows = [json.loads(l) for l in open(pairs) if l.strip()]
texts = list(dict.fromkeys([r["anchor"] for r in rows] + [r[k] for r in rows for k in r if k.startswith("positive") or k.startswith("negative")]))
with tempfile.TemporaryDirectory() as tmp:
    inputs, outputs = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
    with open(inputs, "w") as f:
        for t in texts: f.write(json.dumps({"text": t}) + "\n")
    subprocess.run([binary, "predict", "--model", folder, "--input", inputs, "--output", outputs, "--progress", "none"], check=True)
    ours = np.array([json.loads(l)["embedding"] for l in open(outputs)], dtype=np.float64)
    report = os.path.join(tmp, "eval.json")
    subprocess.run([binary, "eval", "--model", folder, "--data", pairs, "--json", "--report", report, "--progress", "none"],
                   check=True, stdout=subprocess.DEVNULL)
    ours_eval = json.load(open(report))
model = SentenceTransformer(folder, device="cpu")
theirs = model.encode(texts, batch_size=64, convert_to_numpy=True).astype(np.float64)
difference = np.abs(ours - theirs).max()
print(f"{folder}: {len(texts)} texts, modules {[type(m).__name__ for m in model]}, embedding width {theirs.shape[1]}, "
      f"max |ours - sentence-transformers| = {difference:.2e}")
queries, corpus, relevant = {}, {}, {}
query_of, doc_of = {}, {}
for r in rows:
    for k in [k for k in r if k.startswith("positive") or k.startswith("negative")]:
        if r[k] not in doc_of:
            doc_of[r[k]] = "%09d" % len(doc_of); corpus[doc_of[r[k]]] = r[k]
    if r["anchor"] not in query_of:
        query_of[r["anchor"]] = "q%d" % len(query_of); queries[query_of[r["anchor"]]] = r["anchor"]
    relevant.setdefault(query_of[r["anchor"]], set()).add(doc_of[r["positive"]])
evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, name="check", show_progress_bar=False,
                                          accuracy_at_k=[1, 3, 5, 10], precision_recall_at_k=[1, 3, 5, 10], mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[100])
theirs_eval = evaluator(model)
pairs_checked = [("ndcg@10", "check_cosine_ndcg@10"), ("mrr@10", "check_cosine_mrr@10"), ("map@100", "check_cosine_map@100"),
                 ("recall@1", "check_cosine_recall@1"), ("recall@10", "check_cosine_recall@10"), ("accuracy@1", "check_cosine_accuracy@1")]
worst = max(abs(ours_eval["eval_" + a] - theirs_eval[b]) for a, b in pairs_checked)
print("retrieval: " + ", ".join(f"{a} ours {ours_eval['eval_' + a]:.6f} theirs {theirs_eval[b]:.6f}" for a, b in pairs_checked) + f"; max difference {worst:.2e}")
ok = difference <= tolerance
print("OK" if ok else f"FAILED: embeddings differ by more than {tolerance}")
sys.exit(0 if ok else 1)
