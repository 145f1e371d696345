import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// Each encoder family through the command line under real mpirun, on the tiny random models of
/// the golden tests (Tests/Fixtures/tiny-{family}): what works for BERT works for it, with
/// transformers' names in every export.
final class MPNetTrainingTests: IntegrationTestCase {
    let family = FamilyCase(family: .mpnet, mask: "<mask>", loraProbe: "mpnet.encoder.layer.1.attention.attn.o",
                            targetModules: #".*encoder\.layer\.\d+\.(attention\.attn\.q|attention\.attn\.k|attention\.attn\.v|attention\.attn\.o|intermediate\.dense|output\.dense)"#,
                            headTensors: ["classifier.out_proj.weight"], modulesToSave: ["classifier"], maskedLMTensors: ["lm_head.dense.weight", "lm_head.layer_norm.weight", "lm_head.bias"],
                            tiedDecoder: "lm_head.decoder.weight")
    func testClassifierTrainsTheSameOnOneAndTwoRanksAndExportsItsNames() throws { try checkClassifierOnOneAndTwoRanks(family) }
    func testLoRAResumesBitwiseAndNamesItsModules() throws { try checkLoRAResumesBitwise(family) }
    func testMaskedLMAdaptationAndFillMask() throws { try checkMaskedLMAndFillMask(family) }
}

final class RobertaTrainingTests: IntegrationTestCase {
    let family = FamilyCase(family: .roberta, mask: "<mask>", loraProbe: "roberta.encoder.layer.1.output.dense",
                            targetModules: #".*encoder\.layer\.\d+\.(attention\.self\.query|attention\.self\.key|attention\.self\.value|attention\.output\.dense|intermediate\.dense|output\.dense)"#,
                            headTensors: ["classifier.dense.weight", "classifier.out_proj.weight"], modulesToSave: ["classifier"],
                            maskedLMTensors: ["lm_head.dense.weight", "lm_head.layer_norm.weight", "lm_head.bias"], tiedDecoder: "lm_head.decoder.weight")
    func testClassifierTrainsTheSameOnOneAndTwoRanksAndExportsItsNames() throws { try checkClassifierOnOneAndTwoRanks(family) }
    func testLoRAResumesBitwiseAndNamesItsModules() throws { try checkLoRAResumesBitwise(family) }
    func testMaskedLMAdaptationAndFillMask() throws { try checkMaskedLMAndFillMask(family) }
}

final class DistilBertTrainingTests: IntegrationTestCase {
    let family = FamilyCase(family: .distilbert, mask: "[MASK]", loraProbe: "distilbert.transformer.layer.1.ffn.lin2",
                            targetModules: #".*transformer\.layer\.\d+\.(attention\.q_lin|attention\.k_lin|attention\.v_lin|attention\.out_lin|ffn\.lin1|ffn\.lin2)"#,
                            headTensors: ["pre_classifier.weight", "classifier.weight"], modulesToSave: ["pre_classifier", "classifier"],
                            maskedLMTensors: ["vocab_transform.weight", "vocab_layer_norm.weight", "vocab_projector.bias"], tiedDecoder: "vocab_projector.weight")
    func testClassifierTrainsTheSameOnOneAndTwoRanksAndExportsItsNames() throws { try checkClassifierOnOneAndTwoRanks(family) }
    func testLoRAResumesBitwiseAndNamesItsModules() throws { try checkLoRAResumesBitwise(family) }
    func testMaskedLMAdaptationAndFillMask() throws { try checkMaskedLMAndFillMask(family) }
}

/// What a family's exports must say, written out by hand (not derived from `EncoderFamily`, which
/// is what is under test).
struct FamilyCase {
    let family: EncoderFamily
    /// The mask token as a fill-mask input writes it.
    let mask: String
    /// A module LoRA adapts in layer 1, as the adapter names it below base_model.model.
    let loraProbe: String
    /// PEFT's target_modules for --lora-targets all.
    let targetModules: String
    /// Tensors of the cls head (saved with the adapter as modules_to_save).
    let headTensors: [String]
    /// PEFT's modules_to_save: the head's modules.
    let modulesToSave: [String]
    /// Tensors of the masked-LM head, and the tied decoder's name (not written).
    let maskedLMTensors: [String]
    let tiedDecoder: String
    var folder: String { "\(repositoryRoot)/Tests/Fixtures/tiny-\(family.rawValue)" }
}

extension IntegrationTestCase {
    /// ...ForSequenceClassification with dropout (the head's dropouts included) and the embeddings
    /// and first layer frozen: 1 and 2 ranks end with the same weights, the frozen tensors (MPNet's
    /// relative bias with the embeddings) bitwise as loaded; the export is a
    /// ...ForSequenceClassification folder with transformers' names that eval, predict under
    /// mpirun and inspect read back.
    func checkClassifierOnOneAndTwoRanks(_ f: FamilyCase, file: StaticString = #filePath, line: UInt = #line) throws {
        writeText("\(dir)/train.jsonl", count: 120, seed: 1, pairs: true)
        writeText("\(dir)/valid.jsonl", count: 30, seed: 2, pairs: true)
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["train", "--model", "\(f.folder)/classifier", "--train", "\(dir)/train.jsonl",
                                               "--valid", "\(dir)/valid.jsonl", "--output", "\(dir)/run\(ranks)", "--epochs", "2",
                                               "--batch-size", "16", "--lr", "3e-4", "--max-length", "24", "--freeze", "embeddings",
                                               "--freeze-layers", "1", "--progress", "none"])
            XCTAssertEqual(r.status, 0, r.output, file: file, line: line)
            finals[ranks] = try Harness.weights("\(dir)/run\(ranks)/final")
        }
        assertCloseByTensor(finals[2]!, finals[1]!, relative: 1e-5)
        let initial = try Harness.weights("\(f.folder)/classifier")
        XCTAssertEqual(Set(finals[1]!.keys), Set(initial.keys), "the ...ForSequenceClassification tensors, named as transformers names them", file: file, line: line)
        XCTAssertTrue(Set(initial.keys).isSuperset(of: f.headTensors), file: file, line: line)
        let base = f.family.rawValue + "."
        for (name, values) in finals[1]! {
            let frozen = name.hasPrefix(base + "embeddings.") || name.hasPrefix(base + "encoder.layer.0.") || name.hasPrefix(base + "transformer.layer.0.")
                || name == base + "encoder.relative_attention_bias.weight"
            XCTAssertEqual(values == initial[name]!, frozen, "\(name): \(frozen ? "frozen" : "trained")", file: file, line: line)
        }
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/run1/final/config.json")!) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], [f.family.sequenceClassificationArchitecture], file: file, line: line)
        XCTAssertEqual(config["model_type"] as? String, f.family.rawValue, file: file, line: line)
        let e1 = try Harness.finetune(["eval", "--model", "\(dir)/run1/best", "--data", "\(dir)/valid.jsonl", "--json", "--progress", "none"])
        let e2 = try Harness.mpirun(2, ["eval", "--model", "\(dir)/run1/best", "--data", "\(dir)/valid.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(e1.status, 0, e1.output, file: file, line: line)
        XCTAssertEqual(e2.status, 0, e2.output, file: file, line: line)
        let one = try JSONSerialization.jsonObject(with: Data(e1.stdout.utf8)) as! [String: Any]
        let two = try JSONSerialization.jsonObject(with: Data(e2.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(one["eval_loss"] as! Double, two["eval_loss"] as! Double, accuracy: 1e-6, file: file, line: line)
        let p = try Harness.mpirun(2, ["predict", "--model", "\(dir)/run1/best", "--input", "\(dir)/valid.jsonl", "--output", "\(dir)/p.jsonl"])
        XCTAssertEqual(p.status, 0, p.output, file: file, line: line)
        XCTAssertEqual(String(decoding: FileManager.default.contents(atPath: "\(dir)/p.jsonl")!, as: UTF8.self).split(separator: "\n").count, 30, file: file, line: line)
        let inspect = try Harness.finetune(["inspect", "\(dir)/run1/best", "--json"])
        let i = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((i["architecture"] as? [String: String])?["model_type"], f.family.rawValue, inspect.output, file: file, line: line)
    }

    /// LoRA on every linear layer of each layer from the base with cls pooling (a fresh head):
    /// stopped and resumed, bitwise the uninterrupted run; the adapter names the family's modules
    /// for PEFT and saves the head; read back as --model, it evaluates as the merged folder.
    func checkLoRAResumesBitwise(_ f: FamilyCase, file: StaticString = #filePath, line: UInt = #line) throws {
        writeText("\(dir)/train.jsonl", count: 100, seed: 3)
        let common = ["--model", "\(f.folder)/base", "--train", "\(dir)/train.jsonl", "--pooling", "cls", "--epochs", "2",
                      "--batch-size", "10", "--lr", "2e-3", "--lora-rank", "4", "--lora-targets", "all", "--lora-dropout", "0.1",
                      "--save-every", "4", "--progress", "none"]
        let straight = try Harness.mpirun(2, ["train", "--output", "\(dir)/straight"] + common)
        XCTAssertEqual(straight.status, 0, straight.output, file: file, line: line)
        XCTAssertEqual(try Harness.mpirun(2, ["train", "--output", "\(dir)/resumed", "--stop-after-steps", "7"] + common).status, 0, file: file, line: line)
        let resumed = try Harness.mpirun(2, ["train", "--output", "\(dir)/resumed", "--resume"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.output, file: file, line: line)
        XCTAssertEqual(try Harness.weights("\(dir)/resumed/final"), try Harness.weights("\(dir)/straight/final"), file: file, line: line)
        let adapterFile = "final/adapter/adapter_model.safetensors"
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/resumed/\(adapterFile)"), FileManager.default.contents(atPath: "\(dir)/straight/\(adapterFile)"),
                       file: file, line: line)
        let adapter = try SafetensorsFile(path: "\(dir)/straight/\(adapterFile)").entries
        XCTAssertNotNil(adapter["base_model.model.\(f.loraProbe).lora_A.weight"], adapter.keys.sorted().joined(separator: " "), file: file, line: line)
        for head in f.headTensors { XCTAssertNotNil(adapter["base_model.model." + head], "\(head): the head, as modules_to_save", file: file, line: line) }
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/straight/final/adapter/adapter_config.json")!) as! [String: Any]
        XCTAssertEqual(config["target_modules"] as? String, f.targetModules, file: file, line: line)
        XCTAssertEqual(config["modules_to_save"] as? [String], f.modulesToSave, file: file, line: line)
        let merged = try Harness.finetune(["eval", "--model", "\(dir)/straight/final", "--data", "\(dir)/train.jsonl", "--json", "--progress", "none"])
        let viaAdapter = try Harness.finetune(["eval", "--model", "\(dir)/straight/final/adapter", "--data", "\(dir)/train.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(viaAdapter.status, 0, viaAdapter.output, file: file, line: line)
        let m = try JSONSerialization.jsonObject(with: Data(merged.stdout.utf8)) as! [String: Any]
        let a = try JSONSerialization.jsonObject(with: Data(viaAdapter.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(m["eval_loss"] as! Double, a["eval_loss"] as! Double, accuracy: 1e-5, file: file, line: line)
    }

    /// Masked-language modelling from the base: 1 and 2 ranks the same, a ...ForMaskedLM export
    /// (the head's tensors, no decoder weight: it is tied), and fill-mask of the family's mask token under mpirun.
    func checkMaskedLMAndFillMask(_ f: FamilyCase, file: StaticString = #filePath, line: UInt = #line) throws {
        let words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad"]
        var rng = SplitMix64(seed: 5)
        let corpus = (0..<80).map { _ in (0..<(3 + Int(rng.next() % 30))).map { _ in words[Int(rng.next() % 12)] }.joined(separator: " ") }
        FileManager.default.createFile(atPath: "\(dir)/domain.txt", contents: Data((corpus.joined(separator: "\n") + "\n").utf8))
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["train", "--task", "mlm", "--model", "\(f.folder)/base", "--train", "\(dir)/domain.txt",
                                               "--output", "\(dir)/mlm\(ranks)", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
                                               "--max-length", "24", "--progress", "none"])
            XCTAssertEqual(r.status, 0, r.output, file: file, line: line)
            finals[ranks] = try Harness.weights("\(dir)/mlm\(ranks)/final")
        }
        // An epoch at lr 1e-3 grows the summation-order noise: 2.4e-5 of a tensor's scale on a Zen 4
        // machine's AVX-512 kernels (below 1e-5 on Zen 3).
        assertCloseByTensor(finals[2]!, finals[1]!, relative: 5e-5)
        let names = Set(finals[1]!.keys)
        XCTAssertTrue(names.isSuperset(of: f.maskedLMTensors), names.sorted().joined(separator: " "), file: file, line: line)
        XCTAssertFalse(names.contains(f.tiedDecoder), "tied to the word embeddings, as transformers saves it", file: file, line: line)
        XCTAssertFalse(names.contains { $0.contains(".pooler.") }, "...ForMaskedLM has no pooler (nor do these families' classifiers use one)", file: file, line: line)
        let config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/mlm1/final/config.json")!) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], [f.family.maskedLMArchitecture], file: file, line: line)
        FileManager.default.createFile(atPath: "\(dir)/masked.txt", contents: Data("the \(f.mask) model\nfast   \(f.mask) cpu \(f.mask)\n".utf8))
        let filled = try Harness.mpirun(2, ["predict", "--model", "\(dir)/mlm1/final", "--input", "\(dir)/masked.txt", "--output", "\(dir)/filled.jsonl"])
        XCTAssertEqual(filled.status, 0, filled.output, file: file, line: line)
        let lines = String(decoding: FileManager.default.contents(atPath: "\(dir)/filled.jsonl")!, as: UTF8.self).split(separator: "\n")
        let masks = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.map { ($0["masks"] as! [Any]).count }
        XCTAssertEqual(masks, [1, 2], "every \(f.mask) predicted", file: file, line: line)
        let none = try Harness.finetune(["predict", "--model", "\(dir)/mlm1/final", "--input", "\(dir)/domain.txt", "--output", "\(dir)/x.jsonl"])
        XCTAssertNotEqual(none.status, 0, file: file, line: line)
        XCTAssertTrue(none.output.contains("no \(f.mask) in the text"), none.output, file: file, line: line)
    }
}

/// A sentence-transformers model with a Dense module of its own (Tests/Fixtures/st-dense: mean
/// Pooling, Dense 32 -> 16 Tanh, Normalize): the classifier trains on the Dense output, the Dense
/// layer trains along, 1 and 2 ranks agree, a resume is bitwise, and the export lists Transformer,
/// Pooling, the Dense module as it was read and the classifier as a second Dense module.
final class SentenceDenseTrainingTests: IntegrationTestCase {
    func testClassifierOnADenseModuleTrainsResumesAndExports() throws {
        let folder = "\(repositoryRoot)/Tests/Fixtures/st-dense/model"
        writeText("\(dir)/train.jsonl", count: 96, seed: 4)
        let common = ["--model", folder, "--train", "\(dir)/train.jsonl", "--epochs", "2", "--batch-size", "16", "--lr", "1e-3",
                      "--save-every", "3", "--progress", "none"]
        var finals: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2] {
            let r = try Harness.mpirun(ranks, ["train", "--output", "\(dir)/run\(ranks)"] + common)
            XCTAssertEqual(r.status, 0, r.output)
            finals[ranks] = try Harness.weightsWithModules("\(dir)/run\(ranks)/final")
        }
        assertCloseByTensor(finals[2]!, finals[1]!, relative: 1e-5)
        XCTAssertEqual(try Harness.mpirun(2, ["train", "--output", "\(dir)/resumed", "--stop-after-steps", "5"] + common).status, 0)
        let resumed = try Harness.mpirun(2, ["train", "--output", "\(dir)/resumed", "--resume"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Harness.weightsWithModules("\(dir)/resumed/final"), finals[2]!, "the resumed run is the uninterrupted one, bitwise")

        let initial = try SafetensorsFile(path: "\(folder)/2_Dense/model.safetensors").floats("linear.weight")
        XCTAssertNotEqual(finals[1]!["2_Dense/linear.weight"], initial, "the Dense module trains along")
        XCTAssertEqual(finals[1]!["3_Dense/linear.weight"]?.count, 3 * 16, "the classifier reads the Dense output")
        let modules = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/run1/final/modules.json")!) as! [[String: Any]]
        XCTAssertEqual(modules.map { $0["path"] as? String }, ["", "1_Pooling", "2_Dense", "3_Dense"])
        let dense = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(dir)/run1/final/2_Dense/config.json")!) as! [String: Any]
        XCTAssertEqual(dense["activation_function"] as? String, "torch.nn.modules.activation.Tanh")
        XCTAssertEqual(dense["out_features"] as? Int, 16)
        // The export read back: the same evaluation as the run's own final model.
        let exported = try Harness.finetune(["eval", "--model", "\(dir)/run1/final", "--data", "\(dir)/train.jsonl", "--json", "--progress", "none"])
        XCTAssertEqual(exported.status, 0, exported.output)
        let mlm = try Harness.finetune(["train", "--task", "mlm", "--model", folder, "--train", "\(dir)/train.jsonl", "--output", "\(dir)/mlm", "--max-steps", "1"])
        XCTAssertNotEqual(mlm.status, 0)
        XCTAssertTrue(mlm.output.contains("masked-language modelling of a sentence-transformers model with a Dense module is not supported"), mlm.output)
    }
}
