import FineTuneIO
import FineTuneKernels
import Foundation
import XCTest

/// `train --task mlm` through the real command line: domain adaptation of the tiny BERT on plain
/// text, the same weights on 1, 2 and 3 ranks, a bitwise resume, a BertForMaskedLM export named as
/// transformers names it, and a classifier fine-tuned from the adapted folder.
final class MaskedLMTrainingTests: IntegrationTestCase {
    func writeCorpus(_ path: String, lines: Int, seed: UInt64) {
        let words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad"]
        var rng = SplitMix64(seed: seed)
        let text = (0..<lines).map { _ in
            // Some lines longer than --max-length: they are split into windows.
            (0..<(3 + Int(rng.next() % 50))).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ")
        }
        FileManager.default.createFile(atPath: path, contents: Data((text.joined(separator: "\n\n") + "\n").utf8))
    }

    func testAdaptationIsRankCountIndependentResumesBitwiseAndExportsBertForMaskedLM() throws {
        writeCorpus("\(dir)/domain.txt", lines: 120, seed: 1)
        writeCorpus("\(dir)/domain-valid.txt", lines: 30, seed: 2)
        func adapt(_ ranks: Int, _ output: String, _ extra: [String] = []) throws -> Harness.Result {
            try Harness.mpirun(ranks, ["train", "--task", "mlm", "--model", "\(tinyBert)/base", "--train", "\(dir)/domain.txt",
                                       "--valid", "\(dir)/domain-valid.txt", "--output", "\(dir)/\(output)", "--epochs", "2",
                                       "--batch-size", "16", "--lr", "1e-3", "--max-length", "24", "--save-every", "5"] + extra)
        }
        let one = try adapt(1, "one")
        XCTAssertEqual(one.status, 0, one.output)
        let evaluations = Harness.metrics("\(dir)/one").filter { $0["type"] as? String == "eval" }
        XCTAssertEqual(evaluations.count, 2)
        let perplexities = evaluations.compactMap { $0["val_perplexity"] as? Double }
        XCTAssertEqual(perplexities.count, 2)
        XCTAssertLessThan(perplexities[1], perplexities[0], "validation perplexity falls")
        XCTAssertEqual(perplexities[0], exp(evaluations[0]["val_loss"] as! Double), accuracy: 1e-9 * perplexities[0])
        XCTAssertGreaterThan(evaluations[0]["val_examples"] as! Int, 0, "masked tokens scored")
        // eval of the exported folder scores the same masked tokens as the run's evaluation of best/.
        let evaluated = try Harness.finetune(["eval", "--model", "\(dir)/one/best", "--data", "\(dir)/domain-valid.txt", "--json", "--progress", "none"])
        XCTAssertEqual(evaluated.status, 0, evaluated.output)
        let figures = try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as! [String: Any]
        let best = evaluations.min { ($0["val_loss"] as! Double) < ($1["val_loss"] as! Double) }!
        XCTAssertEqual(figures["eval_examples"] as? Int, best["val_examples"] as? Int)
        XCTAssertEqual(figures["eval_loss"] as! Double, best["val_loss"] as! Double, accuracy: 1e-5)
        XCTAssertEqual(figures["eval_accuracy"] as! Double, best["val_accuracy"] as! Double, accuracy: 1e-9)
        XCTAssertEqual(figures["eval_perplexity"] as! Double, best["val_perplexity"] as! Double, accuracy: 1e-4 * (best["val_perplexity"] as! Double))
        let reference = try Harness.weights("\(dir)/one/final")
        // Overlapped or not, sharded with micro-batches: the same weights (the tied decoder's dense gradient included).
        let variants: [(ranks: Int, name: String, extra: [String])] = [
            (2, "ranks2", []), (3, "ranks3", []), (2, "sharded", ["--shard-optimizer", "--grad-accum", "2"]), (2, "no-overlap", ["--no-overlap"]),
        ]
        for (ranks, name, extra) in variants {
            let r = try adapt(ranks, name, extra)
            XCTAssertEqual(r.status, 0, r.output)
            let w = try Harness.weights("\(dir)/\(name)/final")
            XCTAssertEqual(Set(w.keys), Set(reference.keys))
            let worst = reference.keys.map { k in zip(w[k]!, reference[k]!).map { abs($0 - $1) }.max() ?? 0 }.max()!
            XCTAssertLessThan(worst, 2e-5, "\(name): the same masks and weights as 1 rank (float summation order aside)")
        }
        // Stopped and resumed on 2 ranks: bitwise the uninterrupted 2-rank run.
        let stopped = try adapt(2, "resumed", ["--stop-after-steps", "5"])
        XCTAssertEqual(stopped.status, 0, stopped.output)
        let resumed = try adapt(2, "resumed", ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final"), try Harness.weights("\(dir)/ranks2/final"))

        // The export: a BertForMaskedLM folder with the tensors transformers writes for one
        // (Tests/Fixtures/tiny-bert/mlm, saved by transformers), plus the base model's pooler, carried.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/one/final/config.json"))) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["BertForMaskedLM"])
        let ours = try SafetensorsFile(path: "\(dir)/one/final/model.safetensors")
        let transformers = try SafetensorsFile(path: "\(tinyBert)/mlm/model.safetensors")
        XCTAssertEqual(Set(ours.names).subtracting(["bert.pooler.dense.weight", "bert.pooler.dense.bias"]), Set(transformers.names))
        for name in transformers.names { XCTAssertEqual(ours.entries[name]!.shape, transformers.entries[name]!.shape, name) }

        // The adapted encoder fine-tuned as a classifier: the MLM head is left out, the encoder kept.
        writeText("\(dir)/labelled.jsonl", count: 48, seed: 3)
        let fine = try Harness.finetune(["train", "--model", "\(dir)/one/best", "--train", "\(dir)/labelled.jsonl", "--output", "\(dir)/task",
                                         "--max-steps", "1", "--batch-size", "16", "--lr", "1e-12"])
        XCTAssertEqual(fine.status, 0, fine.output)
        let task = try Harness.weights("\(dir)/task/final")
        XCTAssertFalse(task.keys.contains { $0.hasPrefix("cls.") })
        XCTAssertTrue(task.keys.contains("2_Dense/linear.weight") || task.keys.contains("embeddings.word_embeddings.weight"))
        let adapted = try Harness.weights("\(dir)/one/best")
        // One step at lr 1e-12 moves nothing visible: the classifier's encoder is the adapted one.
        for name in ["embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"] {
            let (a, b) = (try XCTUnwrap(task[name]), try XCTUnwrap(adapted["bert." + name]))
            XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-6, name)
        }
    }

    /// Adapted from a sentence-transformers folder, the export keeps its Transformer and Pooling
    /// modules (no Dense: this run trained no task head), so sentence-transformers still loads it.
    func testAnAdaptedSentenceTransformersFolderKeepsItsModules() throws {
        let source = "\(dir)/st"
        try FileManager.default.copyItem(atPath: "\(tinyBert)/base", toPath: source)
        try FileManager.default.createDirectory(atPath: "\(source)/1_Pooling", withIntermediateDirectories: true)
        try #"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#
            .write(toFile: "\(source)/modules.json", atomically: true, encoding: .utf8)
        try #"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#.write(toFile: "\(source)/1_Pooling/config.json", atomically: true, encoding: .utf8)
        writeCorpus("\(dir)/domain.txt", lines: 40, seed: 5)
        let r = try Harness.finetune(["train", "--task", "mlm", "--model", source, "--train", "\(dir)/domain.txt", "--output", "\(dir)/adapt",
                                      "--max-steps", "2", "--batch-size", "8", "--whole-word-mask"])
        XCTAssertEqual(r.status, 0, r.output)
        let modules = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/adapt/final/modules.json"))) as! [[String: Any]]
        XCTAssertEqual(modules.map { $0["path"] as? String }, ["", "1_Pooling"])
        let pooling = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/adapt/final/1_Pooling/config.json"))) as! [String: Any]
        XCTAssertEqual(pooling["pooling_mode"] as? String, "mean")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/adapt/final/config.json"))) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["BertForMaskedLM"])
        XCTAssertNil(config["finetune_dist"], "the exported config is transformers' alone")
    }
}

/// predict on a masked-language model fills masks: the logits at each [MASK] of a text against
/// transformers' BertForMaskedLM on the same inputs (Tests/fixture-scripts/make_mlm_fixture.py; the
/// folder is the one transformers saved), the candidates as the softmax of those logits, the same
/// file on 1 and 2 ranks, and inputs it cannot fill named by line.
final class FillMaskTests: IntegrationTestCase {
    func testFillMaskMatchesTransformersLogits() throws {
        // The fixture's four sequences written as text: their [MASK] positions are golden rows 0; 2, 4; 5; 7, 8.
        let input = [#"{"text": "[MASK] w12 w92"}"#, #"{"text": "w96 [MASK] w6", "text_pair": "w24 w20 [MASK]"}"#, #"{"text": "[MASK]"}"#,
                     #"{"text": "w33 a w51 [MASK] w8", "text_pair": "w49 [MASK] w24 w78"}"#]
        try (input.joined(separator: "\n") + "\n").write(toFile: "\(dir)/masked.jsonl", atomically: true, encoding: .utf8)
        let golden = try SafetensorsFile(path: "\(tinyBert)/golden_mlm.safetensors")
        let V = golden.entries["logits"]!.shape[1]
        let goldenLogits = try golden.floats("logits")
        let rows = [[0], [2, 4], [5], [7, 8]]
        let tokens = try String(contentsOfFile: "\(tinyBert)/mlm/vocab.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        var outputs: [String] = []
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["predict", "--model", "\(tinyBert)/mlm", "--input", "\(dir)/masked.jsonl", "--output", "\(dir)/filled\(ranks).jsonl",
                                               "--with-logits", "--top-k", "3", "--batch-size", "2", "--progress", "none"])
            XCTAssertEqual(r.status, 0, r.output)
            outputs.append(try String(contentsOfFile: "\(dir)/filled\(ranks).jsonl", encoding: .utf8))
        }
        XCTAssertEqual(outputs[0], outputs[1], "2 ranks write what 1 rank writes")
        let lines = outputs[0].split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.count, 4)
        for (line, expected) in zip(lines, rows) {
            let logits = line["logits"] as! [[Double]], masks = line["masks"] as! [[[String: Any]]]
            XCTAssertEqual(logits.count, expected.count); XCTAssertEqual(masks.count, expected.count)
            for ((ours, row), candidates) in zip(zip(logits, expected), masks) {
                let theirs = goldenLogits[row * V..<(row + 1) * V].map(Double.init)
                XCTAssertLessThan(zip(ours, theirs).map { abs($0 - $1) }.max()!, 1e-4, "row \(row): logits as transformers'")
                // The candidates: the most probable tokens under the softmax of transformers' logits.
                let top = theirs.max()!, total = theirs.reduce(0) { $0 + exp($1 - top) }
                let best = theirs.indices.sorted { theirs[$0] > theirs[$1] }.prefix(3)
                XCTAssertEqual(candidates.map { $0["token"] as! Int }, Array(best), "row \(row)")
                for (c, i) in zip(candidates, best) {
                    XCTAssertEqual(c["score"] as! Double, exp(theirs[i] - top) / total, accuracy: 1e-6)
                    XCTAssertEqual(c["token_str"] as? String, tokens[i])
                }
            }
        }
        // Inputs it cannot fill: named by file and line, nothing written.
        try "w12 w92\n[MASK] w6\n".write(toFile: "\(dir)/unmasked.txt", atomically: true, encoding: .utf8)
        try ((0..<50).map { _ in "w12" }.joined(separator: " ") + " [MASK]\n").write(toFile: "\(dir)/long.txt", atomically: true, encoding: .utf8)
        for (file, words) in [("unmasked.txt", "unmasked.txt:1: no [MASK] in the text"), ("long.txt", "long.txt:1: 1 of its 1 [MASK] tokens fall beyond --max-length")] {
            let r = try Harness.finetune(["predict", "--model", "\(tinyBert)/mlm", "--input", "\(dir)/\(file)", "--output", "\(dir)/out-\(file)"])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(words), r.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/out-\(file)"))
        }
    }
}
