import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// One family's golden fixture (Tests/fixture-scripts/make_encoder_fixtures.py): a tiny random
/// model (2 layers, hidden 32, 4 heads) as base/, classifier/ and mlm/ folders, and PyTorch's
/// logits, loss and every gradient for sequences of lengths 5, 9, 3 and 34 (two of them pairs),
/// dropout off. Each check loads a folder as a user's run would and compares one forward and
/// backward pass (tolerances as BertGoldenTests).
struct EncoderGoldenFixture {
    let family: EncoderFamily
    var dir: String { "\(fixturesDirectory)/tiny-\(family.rawValue)" }

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
    /// transformers' name of a parameter in a ...ForSequenceClassification / ...ForMaskedLM: heads
    /// at the top level, the encoder under the family's prefix.
    func transformersName(_ parameter: String) -> String {
        family.topLevelPrefixes.contains(where: parameter.hasPrefix) ? parameter : family.basePrefix + parameter
    }

    /// Logits, loss and every gradient after one forward and backward pass of `b`.
    func compare(_ model: BertModel, _ b: Batch, golden: SafetensorsFile, masked: Bool, gradientName: (String) -> String,
                 file: StaticString = #filePath, line: UInt = #line) throws {
        model.dropout = DropoutRates(hidden: 0, attention: 0, classifier: 0)
        model.gradients.zero()
        let stats = model.forward(b, mode: .training(seed: 0, step: 0))
        let logits = masked ? try XCTUnwrap(model.lastMaskedLogits()).logits : model.lastLogits()
        assertClose(logits.flatMap { $0 }, try golden.floats("logits"), absolute: 2e-6, relative: 0, "logits", file: file, line: line)
        let loss = try golden.floats("loss")[0]
        XCTAssertEqual(Float(stats.lossSum), loss, accuracy: 1e-6 * loss, "loss", file: file, line: line)
        model.backward { _ in }
        try assertGradientsMatch(model, golden: golden, gradientName: gradientName, file: file, line: line)
    }

    /// classifier/ (...ForSequenceClassification, cls pooling): read as a 3-label classifier.
    @discardableResult
    func checkSequenceClassifier(file: StaticString = #filePath, line: UInt = #line) throws -> BertModel {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        XCTAssertEqual(description.task, .classification(labels: ["neg", "neu", "pos"]), file: file, line: line)
        let bundle = description.build(task: description.task!)
        let model = bundle.model as! BertModel
        XCTAssertEqual(model.pooling, .cls, file: file, line: line)
        XCTAssertEqual(model.config.family, family, file: file, line: line)
        try description.loadWeights(into: bundle, seed: 0)
        let i = try inputs()
        var b = batch(i.input_ids)
        b.classTargets = i.labels.map(Int32.init)
        try compare(model, b, golden: SafetensorsFile(path: "\(dir)/golden_cls.safetensors"), masked: false, gradientName: transformersName,
                    file: file, line: line)
        return model
    }

    /// base/ with mean pooling and the reference's linear head; `passthrough`: the base's tensors
    /// the run does not train but carries into its exports (a pooler).
    func checkMeanPooling(passthrough: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        let bundle = description.build(task: .classification(labels: ["a", "b", "c"]))
        let model = bundle.model as! BertModel
        try description.loadWeights(into: bundle, seed: 0)
        XCTAssertEqual(bundle.passthrough.map(\.name).sorted(), passthrough, "carried through", file: file, line: line)
        let golden = try SafetensorsFile(path: "\(dir)/golden_mean.safetensors")
        for (ours, theirs) in [("classifier.weight", "head.weight"), ("classifier.bias", "head.bias")] {
            try golden.read(golden.entries[theirs]!, into: model.parameters.at(model.layout.spec(ours)!))
        }
        let i = try inputs()
        var b = batch(i.input_ids)
        b.classTargets = i.labels.map(Int32.init)
        try compare(model, b, golden: golden, masked: false, gradientName: { $0.hasPrefix("classifier.") ? $0.replacingOccurrences(of: "classifier.", with: "head.") : $0 },
                    file: file, line: line)
    }

    /// mlm/ (...ForMaskedLM, decoder tied to the word embeddings); `headTensors`: the head's names in order.
    func checkMaskedLM(headTensors: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/mlm"))
        XCTAssertEqual(description.headTask, .maskedLanguageModel, "the masked-LM head is recognised", file: file, line: line)
        let bundle = description.build(task: .maskedLanguageModel)
        let model = bundle.model as! BertModel
        try description.loadWeights(into: bundle, seed: 0)
        let i = try inputs()
        var b = batch(i.mlm_input_ids)
        for pair in i.masked { b.maskedPositions.append(Int32(b.sequenceStarts[pair[0]] + pair[1])) }
        b.maskedTargets = i.targets.map(Int32.init)
        try compare(model, b, golden: SafetensorsFile(path: "\(dir)/golden_mlm.safetensors"), masked: true, gradientName: transformersName,
                    file: file, line: line)
        XCTAssertEqual(model.layout.tensors.suffix(headTensors.count).map(\.name), headTensors, file: file, line: line)
    }

    /// Packing: a sequence's logits do not depend on the others in its batch.
    func checkPackingEqualsOneSequenceAtATime(file: StaticString = #filePath, line: UInt = #line) throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        let bundle = description.build(task: description.task!)
        try description.loadWeights(into: bundle, seed: 0)
        let sequences = try inputs().input_ids
        let together = bundle.model.predict(batch(sequences))
        for (i, sequence) in sequences.enumerated() {
            let alone = bundle.model.predict(batch([sequence]))[0]
            for k in alone.indices { XCTAssertEqual(alone[k], together[i][k], accuracy: 1e-6, file: file, line: line) }
        }
    }
}
