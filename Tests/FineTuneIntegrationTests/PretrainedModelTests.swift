import FineTuneCore
import Foundation
import XCTest

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The real all-MiniLM-L6-v2 (launch/fetch-model.sh): mean-pooled embeddings against
/// sentence-transformers' (Tests/fixture-scripts/make_minilm_fixture.py), cosine similarity > 0.9999.
/// CI fetches the model first; elsewhere the test is skipped when the model is not there.
final class PretrainedModelTests: XCTestCase {
    static var modelFolder: String { "\(repositoryRoot)/models/all-MiniLM-L6-v2" }

    static func requireModel() throws {
        guard FileManager.default.fileExists(atPath: "\(modelFolder)/model.safetensors") else {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                XCTFail("\(modelFolder) is missing: .ci/run must run launch/fetch-model.sh all-MiniLM-L6-v2 first")
            }
            throw XCTSkip("run launch/fetch-model.sh all-MiniLM-L6-v2 to test against the real model")
        }
    }

    func testMiniLMEmbeddingsMatchSentenceTransformers() throws {
        try Self.requireModel()
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Tests/FineTuneIntegrationTests/Fixtures/minilm_embeddings.json"))) as! [String: Any]
        let sentences = fixture["sentences"] as! [String]
        let reference = (fixture["embeddings"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
        let description = try ModelFolder.describe(FolderSource(Self.modelFolder))
        XCTAssertNil(description.task, "all-MiniLM-L6-v2 is a base model without a head")
        let model = description.build(task: .regression) as! BertClassifier
        XCTAssertEqual(model.pooling, .mean, "sentence-transformers' own pooling")
        XCTAssertEqual(model.maxLength, fixture["max_seq_length"] as? Int)
        try description.loadWeights(into: model, seed: 0)
        let records = sentences.enumerated().map { TextRecord(text: $0.element, pair: nil, label: nil, line: $0.offset + 1) }
        let data = try TextDataset(records: records, path: "sentences", tokenizer: model.tokenizer, maxLength: model.maxLength,
                                   task: .regression, requireLabels: false)
        let ours = model.pooledOutput(data.batch(Array(0..<data.count)[...]))
        XCTAssertEqual(ours.count, reference.count)
        for (i, (a, b)) in zip(ours, reference).enumerated() {
            var dot = 0.0, na = 0.0, nb = 0.0
            for k in a.indices { dot += Double(a[k]) * Double(b[k]); na += Double(a[k] * a[k]); nb += Double(b[k] * b[k]) }
            let cosine = dot / (na.squareRoot() * nb.squareRoot())
            XCTAssertGreaterThan(cosine, 0.9999, "sentence \(i): \(sentences[i].prefix(40))")
        }
    }
}
