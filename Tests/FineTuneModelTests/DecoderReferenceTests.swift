import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// A real decoder (SmolLM2-135M-Instruct's GGUF) against transformers on the same dequantized
/// weights: logits at every position of 50 prompts, and greedy generation of 32 tokens. Needs the
/// model and transformers' outputs, so it runs from launch/check-decoder.sh (which makes both) and
/// is skipped otherwise: FINETUNE_DIST_DECODER_MODEL (the .gguf) and FINETUNE_DIST_DECODER_REFERENCE
/// (a folder with launch/decoder_reference.py's reference.safetensors).
final class DecoderReferenceTests: XCTestCase {
    func testAgainstTransformers() throws {
        let env = ProcessInfo.processInfo.environment
        guard let modelPath = env["FINETUNE_DIST_DECODER_MODEL"], let referenceFolder = env["FINETUNE_DIST_DECODER_REFERENCE"] else {
            throw XCTSkip("set FINETUNE_DIST_DECODER_MODEL and FINETUNE_DIST_DECODER_REFERENCE (launch/check-decoder.sh)")
        }
        let model = try DecoderLoading.load(modelPath)
        let reference = try SafetensorsFile(path: referenceFolder + "/reference.safetensors")
        let generator = DecoderGenerator(model: model, capacity: 512)
        let eos = Set(model.config.eosTokenIDs.map(Int32.init))
        var worst = 0.0, identical = 0, prompts = 0
        while reference.entries["ids.\(prompts)"] != nil {
            let i = prompts
            let ids = try reference.integers("ids.\(i)").map { Int32($0) }
            var b = Batch(exampleIndices: [i])
            b.tokenIDs = ids
            b.sequenceStarts = [0, ids.count]
            b.nextTokenPositions = (0..<ids.count).map { Int32($0) }
            let ours = model.logits(b).flatMap { $0 }
            let theirs = try reference.floats("logits.\(i)")
            XCTAssertEqual(ours.count, theirs.count)
            let scale = Double(theirs.map(abs).max()!)
            let difference = Double(zip(ours, theirs).map { abs($0 - $1) }.max()!)
            worst = max(worst, difference / scale)
            XCTAssertLessThanOrEqual(difference / scale, 1e-4, "prompt \(i): max |Δ logit| \(difference) of max |logit| \(scale)")
            let expected = try reference.integers("greedy.\(i)").map { Int32($0) }
            let greedy = generator.generate(prompt: ids, maxNewTokens: 32, stop: eos)
            XCTAssertEqual(greedy, expected, "prompt \(i): greedy continuation")
            if greedy == expected { identical += 1 }
            prompts += 1
        }
        XCTAssertEqual(prompts, 50)
        print("decoder reference: \(prompts) prompts, worst max|Δ logit| / max|logit| = \(String(format: "%.2e", worst)), greedy identical \(identical)/\(prompts)")
    }

    /// The tokenizer built from the GGUF's metadata is the committed one transformers built
    /// (Tests/Fixtures/smollm2-tokenizer): the same ids on its 1,200 texts, the same chat template.
    func testTokenizerFromTheGGUF() throws {
        guard let modelPath = ProcessInfo.processInfo.environment["FINETUNE_DIST_DECODER_MODEL"] else {
            throw XCTSkip("set FINETUNE_DIST_DECODER_MODEL (launch/check-decoder.sh)")
        }
        let fromGGUF = try DecoderTokenizer.load(modelPath)
        let folder = fixturesDirectory + "/smollm2-tokenizer"
        let committed = try DecoderTokenizer(json: Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer.json")),
                                             chatTemplate: String(contentsOfFile: folder + "/chat_template.jinja", encoding: .utf8), source: "fixture")
        XCTAssertEqual(fromGGUF.bpe.tokens, committed.bpe.tokens)
        XCTAssertEqual(fromGGUF.chat, committed.chat)
        struct Reference: Decodable { struct Text: Decodable { let text: String; let ids: [Int32] }; let texts: [Text] }
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/reference.json")))
        for case_ in reference.texts { XCTAssertEqual(fromGGUF.bpe.tokenize(case_.text), case_.ids, case_.text) }
    }
}
