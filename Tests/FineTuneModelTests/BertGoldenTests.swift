import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

/// The encoder against PyTorch/transformers on a tiny random BERT (2 layers, hidden 32, 4 heads;
/// Tests/fixture-scripts/make_bert_fixtures.py): a batch of 4 sequences of lengths 5, 9, 3 and 12
/// (two of them sentence pairs), dropout off, both poolings.
///
/// Tolerances are 10x the float32 errors measured (2026-11-30), element by element:
/// - logits: |ours − torch| ≤ 2e-6 (measured 1.8e-7); summed loss: 1e-6 relative (measured exact);
/// - every gradient element: |ours − torch| ≤ 1.5e-5 · scale + 4e-4 · |torch|, scale the tensor's
///   largest |torch| (measured: 1.35e-6 · scale absolute; 3.8e-5 relative on entries above 1% of
///   scale). Entries far below a tensor's scale come from sums that cancel, so only the absolute
///   part can hold them;
/// - the attention key biases, whose gradient is exactly zero (a softmax row does not change when
///   shifted): both sides must be rounding noise, below 1e-9 (measured up to 3e-11).
final class BertGoldenTests: XCTestCase {
    let dir = "\(fixturesDirectory)/tiny-bert"

    func batch() throws -> Batch {
        let inputs = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/inputs.json"))) as! [String: Any]
        let ids = inputs["input_ids"] as! [[Int]], types = inputs["token_type_ids"] as! [[Int]], labels = inputs["labels"] as! [Int]
        var b = Batch(exampleIndices: Array(0..<ids.count))
        for (seq, tt) in zip(ids, types) {
            b.tokenIDs += seq.map(Int32.init); b.tokenTypeIDs += tt.map(Int32.init)
            b.sequenceStarts.append(b.tokenIDs.count)
        }
        b.classTargets = labels.map(Int32.init)
        return b
    }

    func run(_ model: BertModel, golden: SafetensorsFile, gradientName: (String) -> String) throws {
        model.dropout = DropoutRates(hidden: 0, attention: 0, classifier: 0)
        let b = try batch()
        model.gradients.zero()
        let stats = model.trainStep(b, dropoutSeed: 0, step: 0)
        assertClose(model.lastLogits().flatMap { $0 }, try golden.floats("logits"), absolute: 2e-6, relative: 0, "logits")
        let loss = try golden.floats("loss")[0]
        XCTAssertEqual(Float(stats.lossSum), loss, accuracy: 1e-6 * loss, "loss")
        let compared = try assertGradientsMatch(model, golden: golden, gradientName: gradientName)
        XCTAssertGreaterThan(compared, 35)
    }

    func testSequenceClassifierWithCLSPoolingMatchesTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        XCTAssertEqual(description.task, .classification(labels: ["neg", "neu", "pos"]))
        let bundle = description.build(task: description.task!)
        let model = bundle.model as! BertModel
        XCTAssertEqual(model.pooling, .cls)
        try description.loadWeights(into: bundle, seed: 0)
        try run(model, golden: SafetensorsFile(path: "\(dir)/golden_cls.safetensors")) { $0.hasPrefix("classifier.") ? $0 : "bert." + $0 }
    }

    func testMeanPoolingMatchesSentenceTransformersStyleHead() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        XCTAssertNil(description.task, "a base model has no head")
        let bundle = description.build(task: .classification(labels: ["a", "b", "c"]))
        let model = bundle.model as! BertModel
        try description.loadWeights(into: bundle, seed: 0)
        XCTAssertEqual(bundle.passthrough.map(\.name).sorted(), ["pooler.dense.bias", "pooler.dense.weight"], "the unused pooler is carried through")
        let golden = try SafetensorsFile(path: "\(dir)/golden_mean.safetensors")
        for (ours, theirs) in [("classifier.weight", "head.weight"), ("classifier.bias", "head.bias")] {
            let values = try golden.floats(theirs)
            let spec = model.layout.spec(ours)!
            for i in values.indices { model.parameters[spec.offset + i] = values[i] }
        }
        try run(model, golden: golden) { $0.hasPrefix("classifier.") ? $0.replacingOccurrences(of: "classifier.", with: "head.") : $0 }
    }

    func testPackingEqualsOneSequenceAtATime() throws {
        // The logits of a packed batch equal those of each sequence alone.
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        let bundle = description.build(task: description.task!)
        let model = bundle.model
        try description.loadWeights(into: bundle, seed: 0)
        let b = try batch()
        let together = model.predict(b)
        for i in 0..<b.count {
            var one = Batch(exampleIndices: [i])
            one.tokenIDs = Array(b.tokenIDs[b.sequenceStarts[i]..<b.sequenceStarts[i + 1]])
            one.tokenTypeIDs = Array(b.tokenTypeIDs[b.sequenceStarts[i]..<b.sequenceStarts[i + 1]])
            one.sequenceStarts = [0, one.tokenIDs.count]
            let alone = model.predict(one)[0]
            for k in alone.indices { XCTAssertEqual(alone[k], together[i][k], accuracy: 1e-6) }
        }
    }

    /// The gradient exchange sums only the embedding rows the model says it touched: every other
    /// row's gradient must be exactly zero, and every touched row is one of the batch's tokens or positions.
    func testTouchedRowsCoverEveryNonZeroEmbeddingGradientRow() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        let bundle = description.build(task: .classification(labels: ["a", "b"]))
        try description.loadWeights(into: bundle, seed: 0)
        let model = bundle.model as! BertModel
        var b = try batch()
        b.classTargets = b.classTargets.map { $0 % 2 }
        model.gradients.zero()
        model.trainStep(b, dropoutSeed: 1, step: 0)
        for spec in model.sparseGradientTensors {
            let rows = model.touchedRows(in: spec), width = spec.shape[1]
            let nonZero = (0..<spec.shape[0]).filter { row in (0..<width).contains { model.gradients[spec.offset + row * width + $0] != 0 } }
            XCTAssertFalse(nonZero.isEmpty, spec.name)
            XCTAssertTrue(Set(nonZero).isSubset(of: Set(rows)), "\(spec.name): rows with a gradient outside the reported ones")
            XCTAssertEqual(rows, rows.sorted(), spec.name)
        }
        XCTAssertEqual(model.touchedRows(in: model.tensors.wordEmbeddings), Set(b.tokenIDs.map(Int.init)).sorted())
    }
}
