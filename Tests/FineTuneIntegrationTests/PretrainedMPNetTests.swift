import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// The real all-mpnet-base-v2 (launch/fetch-model.sh all-mpnet-base-v2) as it ships: modules.json
/// with a Normalize module whose folder is absent, tokenizer.json with RobertaProcessing,
/// max_seq_length 384. Its sentence embeddings against sentence-transformers' on 40 Debian package
/// descriptions and 8 hostile texts (one cut at 384 tokens; Tests/fixture-scripts/make_mpnet_embeddings_fixture.py).
/// CI fetches the model first; elsewhere the test is skipped when the model is not there.
final class PretrainedMPNetTests: XCTestCase {
    static var modelFolder: String { "\(repositoryRoot)/models/all-mpnet-base-v2" }

    static func requireModel() throws {
        guard FileManager.default.fileExists(atPath: "\(modelFolder)/model.safetensors") else {
            throw Harness.missingCapability("\(modelFolder) is missing: run launch/fetch-model.sh all-mpnet-base-v2 to test against the real model")
        }
    }

    /// Every embedding within 1e-5 of sentence-transformers' relative to its length (both are unit
    /// vectors: ‖ours − theirs‖ ≤ 1e-5), and every element within 1e-5.
    func testEmbeddingsMatchSentenceTransformers() throws {
        try Self.requireModel()
        struct Texts: Decodable { var texts: [String]; var max_seq_length: Int }
        let fixture = try JSONDecoder().decode(Texts.self, from: Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Tests/Fixtures/mpnet_embeddings.json")))
        let reference = try SafetensorsFile(path: "\(repositoryRoot)/Tests/Fixtures/mpnet_embeddings.safetensors").floats("embeddings")
        let description = try ModelFolder.describe(FolderSource(Self.modelFolder))
        XCTAssertNil(description.task, "a base model without a head")
        guard case .bert(let mpnet) = description.kind else { return XCTFail("not an encoder") }
        XCTAssertEqual(mpnet.config.family, .mpnet)
        XCTAssertTrue(mpnet.normalizesEmbeddings, "modules.json lists Normalize (its folder is absent)")
        XCTAssertEqual(mpnet.pooling, .mean)
        let bundle = description.build(task: .regression)
        XCTAssertEqual(bundle.maxLength, fixture.max_seq_length)
        try description.loadWeights(into: bundle, seed: 0)
        let records = fixture.texts.enumerated().map { TextRecord(text: $0.element, pair: nil, label: nil, line: $0.offset + 1) }
        let data = try TextDataset(records: records, path: "texts", tokenizer: bundle.tokenizer!, maxLength: bundle.maxLength!,
                                   task: .regression, requireLabels: false)
        let C = 768
        var worstDistance = 0.0, worstElement: Float = 0
        for start in stride(from: 0, to: data.count, by: 8) {
            let ours = bundle.sentenceEmbeddings(data.batch(Array(start..<min(start + 8, data.count))[...]))
            for (k, embedding) in ours.enumerated() {
                let i = start + k
                let theirs = reference[(i * C)..<((i + 1) * C)]
                let distance = zip(embedding, theirs).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
                worstDistance = max(worstDistance, distance)
                worstElement = max(worstElement, zip(embedding, theirs).map { abs($0 - $1) }.max()!)
                XCTAssertLessThanOrEqual(distance, 1e-5, "text \(i): \(fixture.texts[i].prefix(40))")
            }
        }
        XCTAssertLessThanOrEqual(worstElement, 1e-5)
        print("all-mpnet-base-v2 vs sentence-transformers: worst distance \(worstDistance), worst element \(worstElement) over \(data.count) texts")
    }
}
