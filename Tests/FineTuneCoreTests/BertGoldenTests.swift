import FineTuneCore
import Foundation
import XCTest

/// The encoder against PyTorch/transformers on a tiny random BERT (2 layers, hidden 32, 4 heads;
/// Tests/fixture-scripts/make_bert_fixtures.py): a batch of 4 sequences of lengths 5, 9, 3 and 12
/// (two of them sentence pairs), dropout off, both poolings. Logits and the summed loss must agree
/// within 1e-4 relative, every parameter gradient within 1e-3 (per tensor: max |ours − torch| ≤
/// 1e-3 · max |torch|). The attention key biases have a gradient that is zero in exact arithmetic
/// (a softmax does not change when a row is shifted), so both sides hold rounding noise there:
/// scales below 1e-6 count as 1e-6.
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

    func assertClose(_ ours: [Float], _ reference: [Float], tolerance: Float, floor: Float = 1e-6, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(ours.count, reference.count, what, file: file, line: line)
        let scale = reference.map(abs).max() ?? 0
        let worst = zip(ours, reference).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance * max(scale, floor), "\(what): max difference \(worst), scale \(scale)", file: file, line: line)
    }

    func run(_ model: BertClassifier, golden: SafetensorsFile, gradientName: (String) -> String) throws {
        model.hiddenDropout = 0; model.attentionDropout = 0; model.classifierDropout = 0
        let b = try batch()
        model.gradients.zero()
        let stats = model.trainStep(b, dropoutSeed: 0, step: 0)
        assertClose(model.lastLogits(b.count), try golden.floats("logits"), tolerance: 1e-4, "logits")
        let loss = try golden.floats("loss")[0]
        XCTAssertEqual(Float(stats.lossSum), loss, accuracy: 1e-4 * loss, "loss")
        var compared = 0
        for spec in model.layout.tensors {
            let name = "grad." + gradientName(spec.name)
            guard golden.entries[name] != nil else { XCTFail("no reference gradient \(name)"); continue }
            let ours = Array(UnsafeBufferPointer(start: model.gradients.base + spec.offset, count: spec.count))
            assertClose(ours, try golden.floats(name), tolerance: 1e-3, name)
            compared += 1
        }
        XCTAssertEqual(compared, model.layout.tensors.count)
        XCTAssertGreaterThan(compared, 35)
    }

    func testSequenceClassifierWithCLSPoolingMatchesTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        XCTAssertEqual(description.task, .classification(labels: ["neg", "neu", "pos"]))
        let model = description.build(task: description.task!) as! BertClassifier
        XCTAssertEqual(model.pooling, .cls)
        try description.loadWeights(into: model, seed: 0)
        try run(model, golden: SafetensorsFile(path: "\(dir)/golden_cls.safetensors")) { $0.hasPrefix("classifier.") ? $0 : "bert." + $0 }
    }

    func testMeanPoolingMatchesSentenceTransformersStyleHead() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        XCTAssertNil(description.task, "a base model has no head")
        let model = description.build(task: .classification(labels: ["a", "b", "c"])) as! BertClassifier
        try description.loadWeights(into: model, seed: 0)
        XCTAssertEqual(model.passthrough.map(\.name).sorted(), ["pooler.dense.bias", "pooler.dense.weight"], "the unused pooler is carried through")
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
        let model = description.build(task: description.task!) as! BertClassifier
        try description.loadWeights(into: model, seed: 0)
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
}
