import FineTuneIO
import FineTuneJSON
import FineTuneKernels
@testable import FineTuneModels
import Foundation
import XCTest

/// Tiny random LlamaForCausalLM (grouped-query attention, tied embeddings) and Qwen2ForCausalLM
/// (q/k/v biases, untied lm_head) against transformers in float64 (Tests/fixture-scripts/make_llama_fixture.py):
/// logits at the scored positions, the summed loss and every parameter's gradient, three documents
/// packed into one batch (each run alone by transformers). Tolerances as the encoders' golden tests.
final class DecoderGoldenTests: XCTestCase {
    struct Inputs: Decodable { let documents: [[Int]]; let positions: [Int32]; let targets: [Int32] }
    var folder: String { fixturesDirectory + "/tiny-llama" }

    func inputs() throws -> Inputs {
        try JSONDecoder().decode(Inputs.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/inputs.json")))
    }

    func batch(_ inputs: Inputs) -> Batch {
        var b = Batch(exampleIndices: Array(inputs.documents.indices))
        for doc in inputs.documents {
            b.tokenIDs += doc.map(Int32.init)
            b.sequenceStarts.append(b.tokenIDs.count)
        }
        b.nextTokenPositions = inputs.positions
        b.nextTokenTargets = inputs.targets
        return b
    }

    func check(_ family: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try DecoderLoading.load(folder + "/" + family)
        let golden = try SafetensorsFile(path: folder + "/golden_\(family).safetensors")
        let b = batch(try inputs())
        let stats = model.trainStep(b, dropoutSeed: 1, step: 0)
        let loss = try golden.floats("loss")[0]
        XCTAssertEqual(Float(stats.lossSum), loss, accuracy: 1e-5 * loss, "loss", file: file, line: line)
        XCTAssertEqual(stats.count, Double(b.nextTokenTargets.count))
        // Logits: a forward pass of the positions without their targets.
        var positionsOnly = b
        positionsOnly.nextTokenTargets = []
        let logits = model.logits(positionsOnly).flatMap { $0 }
        let reference = try golden.floats("logits")
        assertClose(logits, reference, absolute: 1e-4 * (reference.map(abs).max() ?? 0), relative: 1e-4, "logits", file: file, line: line)
        var compared = 0
        for spec in model.layout.tensors {
            let name = "grad." + spec.name
            guard golden.entries[name] != nil else { XCTFail("no reference gradient \(name)", file: file, line: line); continue }
            let reference = try golden.floats(name)
            assertClose(model.gradients.values(of: spec), reference, absolute: 1.5e-5 * (reference.map(abs).max() ?? 0), relative: 4e-4, name,
                        file: file, line: line)
            compared += 1
        }
        XCTAssertEqual(compared, model.layout.tensors.count, file: file, line: line)
    }

    func testLlamaGroupedQueryTied() throws { try check("llama") }
    func testQwen2BiasesUntied() throws { try check("qwen2") }

    /// The config as read: transformers 5's rope_parameters, GQA, tying; and written back readable.
    func testConfigRoundTrip() throws {
        let path = folder + "/qwen2/config.json"
        let config = try DecoderConfig.decode(Data(contentsOf: URL(fileURLWithPath: path)), path: path)
        XCTAssertEqual(config.modelType, "qwen2")
        XCTAssertEqual(config.keyValueHeads, 1)
        XCTAssertEqual(config.ropeTheta, 100_000)
        XCTAssertFalse(config.tiedEmbeddings)
        XCTAssertTrue(config.qkvBias)
        XCTAssertFalse(config.outputBias)
        let written = try JSONEncoder().encode(JSONValue.object(config.object()))
        var again = try DecoderConfig.decode(written, path: "written")
        again.raw = config.raw
        XCTAssertEqual(again.ropeTheta, config.ropeTheta)
        XCTAssertEqual(again.keyValueHeads, config.keyValueHeads)
        XCTAssertEqual(again.tiedEmbeddings, config.tiedEmbeddings)
        XCTAssertEqual(again.qkvBias, config.qkvBias)
        XCTAssertThrowsError(try DecoderConfig.decode(Data(#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2}"#.utf8), path: "bad.json")) {
            XCTAssertTrue("\($0)".contains("bad.json"), "\($0)")
        }
    }

    /// LoRA on every projection: with B = 0 the model is the base; the adapters' gradients against
    /// finite differences of the Float model's loss, in a few coordinates; freezing keeps base gradients zero.
    func testLoRAStartsAtTheBaseAndTrainsOnlyAdapters() throws {
        let b = batch(try inputs())
        let base = try DecoderLoading.load(folder + "/llama")
        let lora = try DecoderLoading.load(folder + "/llama", lora: DecoderLoRA(rank: 4, alpha: 8, dropout: 0, targets: DecoderProjection.allCases), seed: 3)
        let baseLoss = base.evaluate(b).lossSum, loraLoss = lora.evaluate(b).lossSum
        XCTAssertEqual(loraLoss, baseLoss, accuracy: 1e-9 * abs(baseLoss))
        let groups = lora.parameterGroups
        lora.trainableFrom = try FreezeSettings().trainableFrom(groups, epoch: 0)
        XCTAssertEqual(groups.last?.kind, .adapters)
        XCTAssertEqual(lora.trainableFrom, groups.last!.range.lowerBound)
        // Non-zero B so the A gradients are not trivially zero.
        for layer in lora.tensors.adapters { for adapter in layer.values { for i in 0..<adapter.b.count { lora.parameters[adapter.b.offset + i] = Float(i % 7) * 0.01 - 0.03 } } }
        lora.gradients.base.update(repeating: 0, count: lora.layout.count)
        lora.trainStep(b, dropoutSeed: 1, step: 0)
        for i in 0..<lora.trainableFrom { XCTAssertEqual(lora.gradients[i], 0, "frozen gradient \(i)"); if lora.gradients[i] != 0 { break } }
        let adapter = lora.tensors.adapters[0][.q]!
        for index in [adapter.a.offset + 3, adapter.b.offset + 5, lora.tensors.adapters[1][.down]!.a.offset + 11] {
            let saved = lora.parameters[index], h: Float = 1e-2
            lora.parameters[index] = saved + h; let plus = lora.evaluate(b).lossSum
            lora.parameters[index] = saved - h; let minus = lora.evaluate(b).lossSum
            lora.parameters[index] = saved
            let numeric = (plus - minus) / Double(2 * h)
            XCTAssertEqual(Double(lora.gradients[index]), numeric, accuracy: 2e-2 * max(1, abs(numeric)), "parameter \(index)")
        }
    }

    /// The key/value cache: the prefill gives the logits of the packed forward at the prompt's last
    /// token, and greedy generation through cached steps equals re-running the whole sequence each step.
    func testKVCacheMatchesTheFullForward() throws {
        for family in ["llama", "qwen2"] {
            let model = try DecoderLoading.load(folder + "/" + family, lora: DecoderLoRA(rank: 2, alpha: 4, dropout: 0, targets: [.q, .v, .down]), seed: 5)
            for layer in model.tensors.adapters { for adapter in layer.values { for i in 0..<adapter.b.count { model.parameters[adapter.b.offset + i] = 0.05 } } }
            let prompt = try inputs().documents[1].prefix(20).map(Int32.init)
            let generator = DecoderGenerator(model: model, capacity: 64)
            generator.prefill(prompt)
            var b = Batch(exampleIndices: [0])
            b.tokenIDs = prompt
            b.sequenceStarts = [0, prompt.count]
            let full = model.logits(b)[0]
            assertClose(generator.lastLogits, full, absolute: 1e-5 * full.map(abs).max()!, relative: 1e-5, "\(family) prefill logits")
            let generated = generator.generate(prompt: prompt, maxNewTokens: 12, stop: [])
            var sequence = prompt
            for token in generated {
                b.tokenIDs = sequence
                b.sequenceStarts = [0, sequence.count]
                let logits = model.logits(b)[0]
                XCTAssertEqual(token, Int32(logits.withUnsafeBufferPointer { argmax($0.baseAddress!, logits.count) }), "\(family) after \(sequence.count) tokens")
                sequence.append(token)
            }
            XCTAssertEqual(generated.count, 12)
            // A stop token ends generation (and is included); sampling with a seed repeats.
            let stopped = generator.generate(prompt: prompt, maxNewTokens: 12, stop: [generated[3]])
            XCTAssertEqual(stopped, Array(generated.prefix(stopped.count)))
            XCTAssertEqual(stopped.last, generated[3])
            let sampling = SamplingSettings(temperature: 1.5, topP: 0.9, seed: 7)
            let a1 = generator.generate(prompt: prompt, maxNewTokens: 12, stop: [], sampling: sampling)
            let a2 = generator.generate(prompt: prompt, maxNewTokens: 12, stop: [], sampling: sampling)
            let a3 = generator.generate(prompt: prompt, maxNewTokens: 12, stop: [], sampling: SamplingSettings(temperature: 1.5, topP: 0.9, seed: 8))
            XCTAssertEqual(a1, a2)
            XCTAssertNotEqual(a1, a3)
        }
    }
}
