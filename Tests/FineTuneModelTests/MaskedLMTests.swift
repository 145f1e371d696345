import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// Masked-language modelling: the head, the tied decoder and the loss at the masked positions
/// against transformers' BertForMaskedLM (Tests/fixture-scripts/make_mlm_fixture.py), and the
/// masking's statistics and keys.
final class MaskedLMTests: XCTestCase {
    let dir = "\(fixturesDirectory)/tiny-bert"

    func mlmBatch() throws -> Batch {
        let inputs = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/mlm_inputs.json"))) as! [String: Any]
        let ids = inputs["input_ids"] as! [[Int]], types = inputs["token_type_ids"] as! [[Int]]
        var b = Batch(exampleIndices: Array(0..<ids.count))
        for (seq, tt) in zip(ids, types) {
            b.tokenIDs += seq.map(Int32.init); b.tokenTypeIDs += tt.map(Int32.init)
            b.sequenceStarts.append(b.tokenIDs.count)
        }
        for pair in inputs["masked"] as! [[Int]] { b.maskedPositions.append(Int32(b.sequenceStarts[pair[0]] + pair[1])) }
        b.maskedTargets = (inputs["targets"] as! [Int]).map(Int32.init)
        return b
    }

    /// The model with the fixture's weights, read by name (encoder under "bert.", head at "cls.").
    func mlmModel() throws -> BertModel {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        guard case .bert(let bert) = description.kind else { throw FineTuneError("not BERT") }
        let model = BertModel(config: bert.config, pooling: .mean, task: .maskedLanguageModel)
        let weights = try SafetensorsFile(path: "\(dir)/mlm/model.safetensors")
        for spec in model.layout.tensors {
            let name = spec.name.hasPrefix("cls.") ? spec.name : "bert." + spec.name
            let entry = try XCTUnwrap(weights.entries[name], name)
            XCTAssertEqual(entry.shape, spec.shape, name)
            try weights.read(entry, into: model.parameters.at(spec))
        }
        model.dropout = DropoutRates(hidden: 0, attention: 0)
        return model
    }

    /// Logits only at the masked positions, the summed loss, and every gradient (the word
    /// embeddings' holding the tied decoder's share) as transformers computes them; tolerances as
    /// the classifier's golden tests.
    func testMaskedLMHeadMatchesTransformers() throws {
        let model = try mlmModel()
        let golden = try SafetensorsFile(path: "\(dir)/golden_mlm.safetensors")
        let b = try mlmBatch()
        model.gradients.zero()
        let stats = model.forward(b, mode: .training(seed: 0, step: 0))
        let (logits, masked) = try XCTUnwrap(model.lastMaskedLogits())
        XCTAssertEqual(masked.maskedPositions, b.maskedPositions, "given positions are used as they are")
        XCTAssertEqual(logits.count, 10)
        assertClose(logits.flatMap { $0 }, try golden.floats("logits"), absolute: 2e-6, relative: 0, "logits")
        let loss = try golden.floats("loss")[0]
        XCTAssertEqual(Float(stats.lossSum), loss, accuracy: 1e-6 * loss, "loss")
        XCTAssertEqual(stats.count, 10)
        model.backward { _ in }
        try assertGradientsMatch(model, golden: golden) { $0.hasPrefix("cls.") ? $0 : "bert." + $0 }
        XCTAssertEqual(model.layout.tensors.filter { $0.name.hasPrefix("cls.") }.count, 5)
        XCTAssertEqual(model.sparseGradientTensors.map(\.name), ["embeddings.position_embeddings.weight"],
                       "the tied decoder's gradient reaches every word-embedding row")
    }

    func settings(wholeWord: Bool = false, continuation: [Bool] = []) -> MaskingSettings {
        MaskingSettings(probability: 0.15, wholeWord: wholeWord, maskID: 4, vocabularySize: 120, specialIDs: [0, 1, 2, 3, 4],
                        continuation: continuation)
    }

    /// 15 % of the non-special tokens chosen, 80 % of those [MASK], 10 % random, 10 % kept; specials
    /// never; the same (seed, step, example) the same mask, in any batch.
    func testMaskingFollowsBERT() {
        var rng = SplitMix64(seed: 9)
        var b = Batch(exampleIndices: Array(100..<2100))
        for _ in 0..<2000 {
            b.tokenIDs += [2] + (0..<30).map { _ in Int32(5 + rng.next() % 115) } + [3]
            b.sequenceStarts.append(b.tokenIDs.count)
        }
        b.tokenTypeIDs = [Int32](repeating: 0, count: b.tokenIDs.count)
        let masked = settings().mask(b, seed: 1, step: 7)
        let chosen = Double(masked.maskedPositions.count), candidates = Double(2000 * 30)
        XCTAssertEqual(chosen / candidates, 0.15, accuracy: 0.005)
        var asMask = 0.0, kept = 0.0
        for (position, target) in zip(masked.maskedPositions, masked.maskedTargets) {
            XCTAssertEqual(b.tokenIDs[Int(position)], target)
            XCTAssertFalse([0, 1, 2, 3, 4].contains(target), "specials are never chosen")
            if masked.tokenIDs[Int(position)] == 4 { asMask += 1 } else if masked.tokenIDs[Int(position)] == target { kept += 1 }
        }
        XCTAssertEqual(asMask / chosen, 0.8, accuracy: 0.01)
        // Kept: 10 %, plus the random replacements that drew the token itself (1/120 of 10 %).
        XCTAssertEqual(kept / chosen, 0.1 + 0.1 / 120, accuracy: 0.01)
        let unchosen = Set(0..<b.tokenIDs.count).subtracting(masked.maskedPositions.map(Int.init))
        XCTAssertTrue(unchosen.allSatisfy { masked.tokenIDs[$0] == b.tokenIDs[$0] })
        // Keyed by example, not by place in the batch: example 1500 alone masks as it did among 2000.
        var single = Batch(exampleIndices: [1500])
        let range = b.sequenceStarts[1400]..<b.sequenceStarts[1401]
        single.tokenIDs = Array(b.tokenIDs[range]); single.tokenTypeIDs = Array(b.tokenTypeIDs[range]); single.sequenceStarts = [0, range.count]
        let alone = settings().mask(single, seed: 1, step: 7)
        XCTAssertEqual(alone.tokenIDs, Array(masked.tokenIDs[range]))
        XCTAssertNotEqual(settings().mask(single, seed: 1, step: 8).tokenIDs, alone.tokenIDs, "another step, another mask")
    }

    /// Whole-word masking chooses a word's pieces together.
    func testWholeWordMaskingTakesEveryPieceOfAWord() {
        // ids 60..<120 continue a word ("##..."); a word is one id below 60 and the pieces after it.
        let continuation = (0..<120).map { $0 >= 60 }
        var rng = SplitMix64(seed: 4)
        var b = Batch(exampleIndices: Array(0..<500))
        for _ in 0..<500 {
            var ids: [Int32] = [2]
            for _ in 0..<10 { ids.append(Int32(5 + rng.next() % 55)); for _ in 0..<(rng.next() % 3) { ids.append(Int32(60 + rng.next() % 60)) } }
            b.tokenIDs += ids + [3]
            b.sequenceStarts.append(b.tokenIDs.count)
        }
        b.tokenTypeIDs = [Int32](repeating: 0, count: b.tokenIDs.count)
        let masked = settings(wholeWord: true, continuation: continuation).mask(b, seed: 2, step: 1)
        let chosen = Set(masked.maskedPositions.map(Int.init))
        var words = 0, chosenWords = 0
        for p in 0..<b.tokenIDs.count where b.tokenIDs[p] >= 5 && b.tokenIDs[p] < 60 {
            var end = p + 1
            while end < b.tokenIDs.count && b.tokenIDs[end] >= 60 { end += 1 }
            let inWord = (p..<end).map { chosen.contains($0) }
            XCTAssertTrue(inWord.allSatisfy { $0 } || inWord.allSatisfy { !$0 }, "word at \(p) split")
            words += 1
            if inWord[0] { chosenWords += 1 }
        }
        XCTAssertEqual(Double(chosenWords) / Double(words), 0.15, accuracy: 0.02)
    }
}
