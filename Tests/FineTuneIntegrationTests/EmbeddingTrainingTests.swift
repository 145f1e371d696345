import FineTuneIO
import Foundation
import XCTest

/// Contrastive sentence-embedding training (`train --task embedding`) through the command line
/// under real mpirun, on the tiny sentence-transformers folder with a Dense module and Normalize
/// (Tests/Fixtures/st-dense/model) and the pairs of Tests/Fixtures/contrastive, whose figures
/// sentence-transformers 6 computed (make_contrastive_fixture.py).
final class EmbeddingTrainingTests: IntegrationTestCase {
    var model: String { "\(repositoryRoot)/Tests/Fixtures/st-dense/model" }
    var pairs: String { "\(repositoryRoot)/Tests/Fixtures/contrastive" }
    struct Reference: Decodable {
        var batchLoss: [String: Double]
        var retrieval: [String: Double]
        enum CodingKeys: String, CodingKey { case batchLoss = "batch_loss", retrieval }
    }
    func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(pairs)/reference.json")))
    }

    func train(_ ranks: Int, _ output: String, _ extra: [String], valid: Bool = false, lr: String = "1e-3") throws -> Harness.Result {
        try Harness.mpirun(ranks, ["train", "--task", "embedding", "--model", model, "--train", "\(pairs)/train.jsonl", "--output", "\(dir)/\(output)",
                                   "--batch-size", "16", "--epochs", "2", "--lr", lr, "--max-length", "40", "--progress", "none"]
                                  + (valid ? ["--valid", "\(pairs)/valid.jsonl"] : []) + extra)
    }

    /// Every anchor is scored against the whole global batch, so the same global batch gives the
    /// same weights on 1, 2 and 3 ranks (dropout on: keyed by each text's index), and GradCache
    /// (mini-batches of 1, 3 or 5 examples on a rank) gives the weights of the uncached step.
    func testSameWeightsOnOneTwoThreeRanksAndWithMiniBatches() throws {
        var finals: [String: [String: [Float]]] = [:]
        for (ranks, mini) in [(1, nil), (2, nil), (3, nil), (2, 3), (1, 5), (3, 1)] as [(Int, Int?)] {
            let name = "run\(ranks)-\(mini ?? 0)"
            let r = try train(ranks, name, ["--dropout", "0.1"] + (mini.map { ["--mini-batch-size", String($0)] } ?? []), lr: "2e-4")
            XCTAssertEqual(r.status, 0, r.output)
            finals[name] = try Harness.weightsWithModules("\(dir)/\(name)/final")
        }
        let initial = try Harness.weightsWithModules(model)
        XCTAssertGreaterThan(zip(finals["run1-0"]!["2_Dense/linear.weight"]!, initial["2_Dense/linear.weight"]!).map { abs($0 - $1) }.max()!, 1e-4,
                             "the Dense module trains along")
        for (name, weights) in finals where name != "run1-0" { assertCloseByTensor(weights, finals["run1-0"]!, relative: 1e-5) }
        // The symmetric loss too.
        for ranks in [1, 2] {
            XCTAssertEqual(try train(ranks, "sym\(ranks)", ["--symmetric", "--mini-batch-size", "4"], lr: "2e-4").status, 0)
        }
        assertCloseByTensor(try Harness.weightsWithModules("\(dir)/sym2/final"), try Harness.weightsWithModules("\(dir)/sym1/final"), relative: 1e-5)
    }

    /// The first step's loss over the whole training set as one batch (no dropout) is
    /// sentence-transformers' MultipleNegativesRankingLoss of the same texts, plain and symmetric.
    func testFirstStepLossEqualsSentenceTransformers() throws {
        let expected = try reference().batchLoss
        for (name, extra) in [("plain", []), ("symmetric", ["--symmetric"])] {
            let r = try Harness.mpirun(2, ["train", "--task", "embedding", "--model", model, "--train", "\(pairs)/train.jsonl", "--output", "\(dir)/\(name)",
                                           "--batch-size", "48", "--max-steps", "1", "--max-length", "40", "--dropout", "0", "--attention-dropout", "0",
                                           "--progress", "none", "--mini-batch-size", "7"] + extra)
            XCTAssertEqual(r.status, 0, r.output)
            let loss = try XCTUnwrap(Harness.metrics("\(dir)/\(name)").first { $0["type"] as? String == "train" }?["loss"] as? Double)
            XCTAssertEqual(loss, expected[name]!, accuracy: 1e-5 * expected[name]!, name)
        }
    }

    /// `eval` of a sentence-transformers folder is retrieval of each anchor's positive among all
    /// positives and negatives, with sentence-transformers' InformationRetrievalEvaluator's figures,
    /// on one rank and two.
    func testRetrievalEvaluationEqualsSentenceTransformers() throws {
        let expected = try reference().retrieval
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["eval", "--model", model, "--data", "\(pairs)/valid.jsonl", "--json", "--progress", "none", "--batch-size", "5"])
            XCTAssertEqual(r.status, 0, r.output)
            let line = try XCTUnwrap(r.output.split(separator: "\n").last { $0.hasPrefix("{") })
            let figures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(figures["eval_examples"] as? Int, 24)
            for name in ["ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10", "accuracy@1"] {
                XCTAssertEqual(try XCTUnwrap(figures["eval_\(name)"] as? Double), expected[name]!, accuracy: 1e-6, "\(name) on \(ranks) rank(s)")
            }
        }
    }

    /// A run with validation keeps the best NDCG@10 in best/, a sentence-transformers folder with the
    /// model's modules (Transformer, Pooling, its Dense module, Normalize) that `eval` reads back to
    /// the same figure and `predict` embeds as unit vectors; a run resumed from a checkpoint ends
    /// with the uninterrupted run's weights, bitwise.
    func testBestExportEvaluatesAsTheRunAndResumeIsBitwise() throws {
        let r = try train(2, "whole", ["--mini-batch-size", "3"], valid: true)
        XCTAssertEqual(r.status, 0, r.output)
        let evaluations = Harness.metrics("\(dir)/whole").filter { $0["type"] as? String == "eval" }
        XCTAssertEqual(evaluations.count, 2)
        let best = try XCTUnwrap(evaluations.compactMap { $0["val_ndcg@10"] as? Double }.max())
        let modules = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/whole/best/modules.json"))) as? [[String: Any]])
        XCTAssertEqual(modules.compactMap { ($0["type"] as? String)?.split(separator: ".").last.map(String.init) }, ["Transformer", "Pooling", "Dense", "Normalize"])
        let e = try Harness.finetune(["eval", "--model", "\(dir)/whole/best", "--data", "\(pairs)/valid.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(e.status, 0, e.output)
        let figures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(e.output.split(separator: "\n").last { $0.hasPrefix("{") }!.utf8)) as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(figures["eval_ndcg@10"] as? Double), best, accuracy: 1e-6)
        FileManager.default.createFile(atPath: "\(dir)/texts.jsonl", contents: Data("{\"text\": \"the fast cpu\"}\n{\"text\": \"w3 w51 mpi\"}\n".utf8))
        let p = try Harness.finetune(["predict", "--model", "\(dir)/whole/best", "--input", "\(dir)/texts.jsonl", "--output", "\(dir)/emb.jsonl", "--progress", "none"])
        XCTAssertEqual(p.status, 0, p.output)
        let lines = String(decoding: try Data(contentsOf: URL(fileURLWithPath: "\(dir)/emb.jsonl")), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        for line in lines {
            let vector = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["embedding"] as? [Double])
            XCTAssertEqual(vector.count, 16, "the Dense module's width")
            XCTAssertEqual(vector.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5, "Normalize")
        }
        XCTAssertEqual(try train(2, "stopped", ["--mini-batch-size", "3", "--stop-after-steps", "4"], valid: true).status, 0)
        let resumed = try train(2, "stopped", ["--mini-batch-size", "3", "--resume"], valid: true)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Harness.weightsWithModules("\(dir)/stopped/final"), try Harness.weightsWithModules("\(dir)/whole/final"))
    }

    /// Pairs and options that cannot train say what and where, and every rank exits.
    func testBadInputIsRefusedWithItsPlace() throws {
        func expectFailure(_ arguments: [String], train: String? = nil, _ message: String, ranks: Int = 2) throws {
            let r = try Harness.mpirun(ranks, ["train", "--task", "embedding", "--model", model, "--train", train ?? "\(pairs)/train.jsonl",
                                               "--output", "\(dir)/bad", "--progress", "none", "--overwrite"] + arguments)
            XCTAssertNotEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains(message), "expected \"\(message)\" in:\n\(r.output)")
        }
        let path = "\(dir)/pairs.jsonl"
        FileManager.default.createFile(atPath: path, contents: Data("{\"anchor\": \"a\", \"positive\": \"the cpu\"}\n{\"anchor\": \"the rank\"}\n".utf8))
        try expectFailure([], train: path, "\(path):2: missing \"positive\"")
        FileManager.default.createFile(atPath: path, contents: Data("{\"anchor\": \"a\", \"positive\": \"the cpu\"}\n{\"anchor\": \" \", \"positive\": \"x\"}\n".utf8))
        try expectFailure([], train: path, "\(path):2: \"anchor\" is empty")
        FileManager.default.createFile(atPath: path, contents: Data("{\"anchor\": \"a\", \"positive\": \"b\", \"negative\": \"c\"}\n{\"anchor\": \"a b\", \"positive\": \"b c\"}\n".utf8))
        try expectFailure([], train: path, "\(path):2: texts anchor, positive, but the first line has anchor, positive, negative")
        try expectFailure(["--batch-size", "1"], "--batch-size 1: contrastive training needs at least 2 examples")
        try expectFailure(["--batch-size", "16", "--mini-batch-size", "9"], "--mini-batch-size 9 is above each rank's share of the global batch")
        try expectFailure(["--grad-accum", "2"], "with --task embedding use --mini-batch-size")
        try expectFailure(["--monitor", "val_loss", "--valid", "\(pairs)/valid.jsonl"], "--monitor val_loss is not a metric of a sentence-embedding model")
        let r = try Harness.mpirun(2, ["train", "--task", "embedding", "--model", "\(tinyBert)/classifier", "--train", "\(pairs)/train.jsonl",
                                       "--output", "\(dir)/cls", "--progress", "none"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("--task embedding: the model has a classification head"), r.output)
        let s = try Harness.finetune(["train", "--model", model, "--train", "\(pairs)/train.jsonl", "--output", "\(dir)/s", "--scale", "10"])
        XCTAssertNotEqual(s.status, 0)
        XCTAssertTrue(s.output.contains("--scale, --symmetric and --mini-batch-size need --task embedding"), s.output)
    }
}
