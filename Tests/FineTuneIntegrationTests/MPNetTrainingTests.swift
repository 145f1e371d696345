import FineTuneIO
import FineTuneKernels
import Foundation
import XCTest

/// MPNet through the command line under real mpirun, on the tiny random MPNet of the golden tests
/// (Tests/Fixtures/tiny-mpnet): what works for BERT works for it, with transformers' MPNet names in
/// every export.
final class MPNetTrainingTests: IntegrationTestCase {
    var tinyMPNet: String { "\(repositoryRoot)/Tests/Fixtures/tiny-mpnet" }

    /// MPNetForSequenceClassification with dropout (its head's two dropouts included) and the first
    /// layer frozen: 1 and 2 ranks end with the same weights, the frozen layer and the relative
    /// bias (with the embeddings) bitwise as loaded; the export is an MPNetForSequenceClassification
    /// folder that eval and predict under mpirun read back.
    func testClassifierTrainsTheSameOnOneAndTwoRanksAndExportsMPNetNames() throws {
        writeText("\(dir)/train.jsonl", count: 120, seed: 1, pairs: true)
        writeText("\(dir)/valid.jsonl", count: 30, seed: 2, pairs: true)
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["train", "--model", "\(tinyMPNet)/classifier", "--train", "\(dir)/train.jsonl",
                                               "--valid", "\(dir)/valid.jsonl", "--output", "\(dir)/run\(ranks)", "--epochs", "2",
                                               "--batch-size", "16", "--lr", "3e-4", "--max-length", "24", "--freeze", "embeddings",
                                               "--freeze-layers", "1", "--progress", "none"])
            XCTAssertEqual(r.status, 0, r.output)
            finals[ranks] = try Harness.weights("\(dir)/run\(ranks)/final")
        }
        assertCloseByTensor(finals[2]!, finals[1]!, relative: 1e-5)
        let initial = try Harness.weights("\(tinyMPNet)/classifier")
        XCTAssertEqual(Set(finals[1]!.keys), Set(initial.keys), "MPNetForSequenceClassification's tensors, named as transformers names them")
        for (name, values) in finals[1]! {
            let frozen = name.hasPrefix("mpnet.embeddings.") || name.hasPrefix("mpnet.encoder.layer.0.") || name == "mpnet.encoder.relative_attention_bias.weight"
            XCTAssertEqual(values == initial[name]!, frozen, "\(name): \(frozen ? "frozen" : "trained")")
        }
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/run1/final/config.json")!) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["MPNetForSequenceClassification"])
        XCTAssertEqual(config["model_type"] as? String, "mpnet")
        let e1 = try Harness.finetune(["eval", "--model", "\(dir)/run1/best", "--data", "\(dir)/valid.jsonl", "--json", "--progress", "none"])
        let e2 = try Harness.mpirun(2, ["eval", "--model", "\(dir)/run1/best", "--data", "\(dir)/valid.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(e1.status, 0, e1.output)
        XCTAssertEqual(e2.status, 0, e2.output)
        let one = try JSONSerialization.jsonObject(with: Data(e1.stdout.utf8)) as! [String: Any]
        let two = try JSONSerialization.jsonObject(with: Data(e2.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(one["eval_loss"] as! Double, two["eval_loss"] as! Double, accuracy: 1e-6)
        let p = try Harness.mpirun(2, ["predict", "--model", "\(dir)/run1/best", "--input", "\(dir)/valid.jsonl", "--output", "\(dir)/p.jsonl"])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssertEqual(String(decoding: FileManager.default.contents(atPath: "\(dir)/p.jsonl")!, as: UTF8.self).split(separator: "\n").count, 30)
        let inspect = try Harness.finetune(["inspect", "\(dir)/run1/best", "--json"])
        let i = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((i["architecture"] as? [String: String])?["model_type"], "mpnet", inspect.output)
    }

    /// LoRA on MPNet's q, k, v, o and feed-forward layers from a base with mean pooling: stopped
    /// and resumed, bitwise the uninterrupted run; the adapter names MPNet's modules for PEFT.
    func testLoRAResumesBitwiseAndNamesMPNetModules() throws {
        writeText("\(dir)/train.jsonl", count: 100, seed: 3)
        let common = ["--model", "\(tinyMPNet)/base", "--train", "\(dir)/train.jsonl", "--pooling", "cls", "--epochs", "2",
                      "--batch-size", "10", "--lr", "2e-3", "--lora-rank", "4", "--lora-targets", "all", "--lora-dropout", "0.1",
                      "--save-every", "4", "--progress", "none"]
        let straight = try Harness.mpirun(2, ["train", "--output", "\(dir)/straight"] + common)
        XCTAssertEqual(straight.status, 0, straight.output)
        XCTAssertEqual(try Harness.mpirun(2, ["train", "--output", "\(dir)/resumed", "--stop-after-steps", "7"] + common).status, 0)
        let resumed = try Harness.mpirun(2, ["train", "--output", "\(dir)/resumed", "--resume"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final"), try Harness.weights("\(dir)/straight/final"))
        let adapterFile = "final/adapter/adapter_model.safetensors"
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/resumed/\(adapterFile)"), FileManager.default.contents(atPath: "\(dir)/straight/\(adapterFile)"))
        let adapter = try SafetensorsFile(path: "\(dir)/straight/\(adapterFile)").entries
        XCTAssertNotNil(adapter["base_model.model.mpnet.encoder.layer.1.attention.attn.o.lora_A.weight"], adapter.keys.sorted().joined(separator: " "))
        XCTAssertNotNil(adapter["base_model.model.classifier.out_proj.weight"], "the head, as modules_to_save")
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/straight/final/adapter/adapter_config.json")!) as! [String: Any]
        XCTAssertEqual(config["target_modules"] as? String,
                       #".*encoder\.layer\.\d+\.(attention\.attn\.q|attention\.attn\.k|attention\.attn\.v|attention\.attn\.o|intermediate\.dense|output\.dense)"#)
        XCTAssertEqual(config["modules_to_save"] as? [String], ["classifier"])
        // The adapter as --model: the same evaluation as the merged folder.
        let merged = try Harness.finetune(["eval", "--model", "\(dir)/straight/final", "--data", "\(dir)/train.jsonl", "--json", "--progress", "none"])
        let viaAdapter = try Harness.finetune(["eval", "--model", "\(dir)/straight/final/adapter", "--data", "\(dir)/train.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(viaAdapter.status, 0, viaAdapter.output)
        let m = try JSONSerialization.jsonObject(with: Data(merged.stdout.utf8)) as! [String: Any]
        let a = try JSONSerialization.jsonObject(with: Data(viaAdapter.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(m["eval_loss"] as! Double, a["eval_loss"] as! Double, accuracy: 1e-5)
    }

    /// Masked-language modelling on MPNet: 1 and 2 ranks the same, an MPNetForMaskedLM export
    /// (lm_head.*, no decoder tensor: it is tied), and fill-mask of "<mask>" under mpirun.
    func testMaskedLMAdaptationAndFillMask() throws {
        let words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad"]
        var rng = SplitMix64(seed: 5)
        let corpus = (0..<80).map { _ in (0..<(3 + Int(rng.next() % 30))).map { _ in words[Int(rng.next() % 12)] }.joined(separator: " ") }
        FileManager.default.createFile(atPath: "\(dir)/domain.txt", contents: Data((corpus.joined(separator: "\n") + "\n").utf8))
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["train", "--task", "mlm", "--model", "\(tinyMPNet)/base", "--train", "\(dir)/domain.txt",
                                               "--output", "\(dir)/mlm\(ranks)", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
                                               "--max-length", "24", "--progress", "none"])
            XCTAssertEqual(r.status, 0, r.output)
            finals[ranks] = try Harness.weights("\(dir)/mlm\(ranks)/final")
        }
        assertCloseByTensor(finals[2]!, finals[1]!, relative: 1e-5)
        let names = Set(finals[1]!.keys)
        XCTAssertTrue(names.isSuperset(of: ["lm_head.dense.weight", "lm_head.layer_norm.weight", "lm_head.bias", "mpnet.encoder.relative_attention_bias.weight"]))
        XCTAssertFalse(names.contains("lm_head.decoder.weight"), "tied to the word embeddings, as transformers saves it")
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/mlm1/final/config.json")!) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["MPNetForMaskedLM"])
        FileManager.default.createFile(atPath: "\(dir)/masked.txt", contents: Data("the <mask> model\nfast   <mask> cpu <mask>\n".utf8))
        let filled = try Harness.mpirun(2, ["predict", "--model", "\(dir)/mlm1/final", "--input", "\(dir)/masked.txt", "--output", "\(dir)/filled.jsonl"])
        XCTAssertEqual(filled.status, 0, filled.output)
        let lines = String(decoding: FileManager.default.contents(atPath: "\(dir)/filled.jsonl")!, as: UTF8.self).split(separator: "\n")
        let masks = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.map { ($0["masks"] as! [Any]).count }
        XCTAssertEqual(masks, [1, 2], "every <mask> predicted")
        let none = try Harness.finetune(["predict", "--model", "\(dir)/mlm1/final", "--input", "\(dir)/domain.txt", "--output", "\(dir)/x.jsonl"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.output.contains("no <mask> in the text"), none.output)
    }
}
