import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// MPNet against PyTorch/transformers on a tiny random MPNet (2 layers, hidden 32, 4 heads, 32
/// relative-position buckets; Tests/fixture-scripts/make_mpnet_fixtures.py): sequences of lengths
/// 5, 9, 3 and 34 (two of them pairs; 34 reaches the logarithmic buckets), dropout off, for the
/// sequence classifier (MPNetForSequenceClassification), mean pooling with a linear head, and the
/// masked-LM head (MPNetForMaskedLM). Tolerances as BertGoldenTests.
final class MPNetGoldenTests: XCTestCase {
    let dir = "\(fixturesDirectory)/tiny-mpnet"

    struct Inputs: Decodable {
        var input_ids: [[Int]], labels: [Int], mlm_input_ids: [[Int]], masked: [[Int]], targets: [Int]
    }
    func inputs() throws -> Inputs {
        try JSONDecoder().decode(Inputs.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/inputs.json")))
    }
    func batch(_ sequences: [[Int]]) -> Batch {
        var b = Batch(exampleIndices: Array(0..<sequences.count))
        for seq in sequences {
            b.tokenIDs += seq.map(Int32.init)
            b.tokenTypeIDs += [Int32](repeating: 0, count: seq.count)
            b.sequenceStarts.append(b.tokenIDs.count)
        }
        return b
    }

    /// Logits, loss and every gradient after one forward and backward pass of `b`.
    func compare(_ model: BertModel, _ b: Batch, golden: SafetensorsFile, masked: Bool, gradientName: (String) -> String) throws {
        model.dropout = DropoutRates(hidden: 0, attention: 0, classifier: 0)
        model.gradients.zero()
        let stats = model.forward(b, mode: .training(seed: 0, step: 0))
        let logits = masked ? try XCTUnwrap(model.lastMaskedLogits()).logits : model.lastLogits()
        assertClose(logits.flatMap { $0 }, try golden.floats("logits"), absolute: 2e-6, relative: 0, "logits")
        let loss = try golden.floats("loss")[0]
        XCTAssertEqual(Float(stats.lossSum), loss, accuracy: 1e-6 * loss, "loss")
        model.backward { _ in }
        try assertGradientsMatch(model, golden: golden, gradientName: gradientName)
        XCTAssertNotNil(model.layout.spec("encoder.relative_attention_bias.weight"), "the relative bias is a parameter, and was compared")
    }

    func testSequenceClassifierMatchesTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        XCTAssertEqual(description.task, .classification(labels: ["neg", "neu", "pos"]))
        let bundle = description.build(task: description.task!)
        let model = bundle.model as! BertModel
        XCTAssertEqual(model.pooling, .cls)
        XCTAssertEqual(model.config.family, .mpnet)
        XCTAssertEqual(model.config.positionOffset, 2)
        try description.loadWeights(into: bundle, seed: 0)
        let i = try inputs()
        var b = batch(i.input_ids)
        b.classTargets = i.labels.map(Int32.init)
        try compare(model, b, golden: SafetensorsFile(path: "\(dir)/golden_cls.safetensors"), masked: false) {
            $0.hasPrefix("classifier.") ? $0 : "mpnet." + $0
        }
    }

    func testMeanPoolingMatchesTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        let bundle = description.build(task: .classification(labels: ["a", "b", "c"]))
        let model = bundle.model as! BertModel
        try description.loadWeights(into: bundle, seed: 0)
        XCTAssertEqual(bundle.passthrough.map(\.name).sorted(), ["pooler.dense.bias", "pooler.dense.weight"], "the unused pooler is carried through")
        let golden = try SafetensorsFile(path: "\(dir)/golden_mean.safetensors")
        for (ours, theirs) in [("classifier.weight", "head.weight"), ("classifier.bias", "head.bias")] {
            try golden.read(golden.entries[theirs]!, into: model.parameters.at(model.layout.spec(ours)!))
        }
        let i = try inputs()
        var b = batch(i.input_ids)
        b.classTargets = i.labels.map(Int32.init)
        try compare(model, b, golden: golden, masked: false) { $0.hasPrefix("classifier.") ? $0.replacingOccurrences(of: "classifier.", with: "head.") : $0 }
    }

    func testMaskedLMMatchesTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/mlm"))
        XCTAssertEqual(description.headTask, .maskedLanguageModel, "MPNetForMaskedLM's lm_head is recognised")
        let bundle = description.build(task: .maskedLanguageModel)
        let model = bundle.model as! BertModel
        try description.loadWeights(into: bundle, seed: 0)
        let i = try inputs()
        var b = batch(i.mlm_input_ids)
        for pair in i.masked { b.maskedPositions.append(Int32(b.sequenceStarts[pair[0]] + pair[1])) }
        b.maskedTargets = i.targets.map(Int32.init)
        try compare(model, b, golden: SafetensorsFile(path: "\(dir)/golden_mlm.safetensors"), masked: true) {
            $0.hasPrefix("lm_head.") ? $0 : "mpnet." + $0
        }
        XCTAssertEqual(model.layout.tensors.filter { $0.name.hasPrefix("lm_head.") }.map(\.name),
                       ["lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias", "lm_head.bias"])
    }

    /// Every bucket of distances −600...600 as transformers computes it (Float logarithms included).
    func testRelativePositionBucketsMatchTransformers() throws {
        struct Buckets: Decodable { var relative: [Int]; var bucket: [Int] }
        let reference = try JSONDecoder().decode(Buckets.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/buckets.json")))
        XCTAssertEqual(reference.relative.map { relativePositionBucket($0, buckets: 32, maxDistance: 128) }, reference.bucket)
    }

    /// Packing: a sequence's logits do not depend on the others in its batch (the relative bias of
    /// the longest sequence is shared by the shorter ones).
    func testPackingEqualsOneSequenceAtATime() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        let bundle = description.build(task: description.task!)
        try description.loadWeights(into: bundle, seed: 0)
        let sequences = try inputs().input_ids
        let together = bundle.model.predict(batch(sequences))
        for (i, sequence) in sequences.enumerated() {
            let alone = bundle.model.predict(batch([sequence]))[0]
            for k in alone.indices { XCTAssertEqual(alone[k], together[i][k], accuracy: 1e-6) }
        }
    }
}
