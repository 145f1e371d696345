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
        let reference = try Harness.weights("\(dir)/one/final")
        for ranks in [2, 3] {
            let r = try adapt(ranks, "ranks\(ranks)")
            XCTAssertEqual(r.status, 0, r.output)
            let w = try Harness.weights("\(dir)/ranks\(ranks)/final")
            XCTAssertEqual(Set(w.keys), Set(reference.keys))
            let worst = reference.keys.map { k in zip(w[k]!, reference[k]!).map { abs($0 - $1) }.max() ?? 0 }.max()!
            XCTAssertLessThan(worst, 2e-5, "\(ranks) ranks: the same masks and weights as 1 rank (float summation order aside)")
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
