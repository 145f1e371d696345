import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// A sentence-transformers folder with a Dense module of its own (Transformer, mean Pooling,
/// Dense 32 -> 16 with Tanh, Normalize; Tests/fixture-scripts/make_st_dense_fixture.py on the tiny
/// random BERT): its embeddings are sentence-transformers', and a classifier trained on it sees the
/// Dense output, with the Dense layer's gradients as PyTorch computes them. Also CLS-token pooling.
final class SentenceDenseTests: XCTestCase {
    let dir = "\(fixturesDirectory)/st-dense"
    let tiny = EncoderGoldenFixture(family: .bert)

    struct Reference: Decodable { var input_ids: [[Int]]; var token_type_ids: [[Int]]; var labels: [Int]; var embeddings: [[Float]] }
    func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/embeddings.json")))
    }
    func batch(_ r: Reference) -> Batch {
        var b = tiny.batch(r.input_ids)
        b.tokenTypeIDs = r.token_type_ids.flatMap { $0.map(Int32.init) }
        return b
    }

    func testModulesAreReadAndEmbeddingsMatchSentenceTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/model"))
        XCTAssertNil(description.task, "its Dense module is the model's own, not a classifier")
        guard case .bert(let bert) = description.kind else { return XCTFail("a BERT description") }
        XCTAssertEqual(bert.projection, EmbeddingProjection(outputs: 16, bias: true, activation: .tanh))
        XCTAssertTrue(bert.normalizesEmbeddings)
        let bundle = description.build(task: .classification(labels: ["a", "b", "c"]))
        try description.loadWeights(into: bundle, seed: 0)
        let r = try reference()
        let ours = bundle.sentenceEmbeddings(batch(r))
        XCTAssertEqual(ours.count, r.embeddings.count)
        for (a, b) in zip(ours, r.embeddings) { assertClose(a, b, absolute: 1e-6, relative: 0, "embedding") }
    }

    /// CLS-token pooling (BGE-style folders): the embedding is the first token's hidden state,
    /// normalised, not the classifier's dense + tanh on it.
    func testCLSPoolingEmbeddingsMatchSentenceTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/cls-model"))
        let bundle = description.build(task: .classification(labels: ["a", "b"]))
        XCTAssertEqual((bundle.model as! BertModel).pooling, .cls)
        try description.loadWeights(into: bundle, seed: 0)
        let r = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/cls_embeddings.json")))
        for (a, b) in zip(bundle.sentenceEmbeddings(batch(r)), r.embeddings) { assertClose(a, b, absolute: 1e-6, relative: 0, "embedding") }
    }

    func testClassifierOnTheDenseOutputMatchesPyTorch() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/model"))
        let bundle = description.build(task: .classification(labels: ["a", "b", "c"]))
        let model = bundle.model as! BertModel
        try description.loadWeights(into: bundle, seed: 0)
        XCTAssertEqual(model.layout.tensors.suffix(4).map(\.name), ["projection.weight", "projection.bias", "classifier.weight", "classifier.bias"])
        let golden = try SafetensorsFile(path: "\(dir)/golden_dense.safetensors")
        for (ours, theirs) in [("classifier.weight", "head.weight"), ("classifier.bias", "head.bias")] {
            try golden.read(golden.entries[theirs]!, into: model.parameters.at(model.layout.spec(ours)!))
        }
        let r = try reference()
        var b = batch(r)
        b.classTargets = r.labels.map(Int32.init)
        try tiny.compare(model, b, golden: golden, masked: false) { $0.hasPrefix("classifier.") ? $0.replacingOccurrences(of: "classifier.", with: "head.") : $0 }
    }

    func testUnsupportedDenseModulesAreNamed() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("st-dense-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.copyItem(atPath: "\(dir)/model", toPath: folder)
        let config = "\(folder)/2_Dense/config.json"
        let original = try String(contentsOfFile: config, encoding: .utf8)
        try original.replacingOccurrences(of: "activation.Tanh", with: "activation.Sigmoid").write(toFile: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelFolder.describe(FolderSource(folder))) { error in
            XCTAssertTrue("\(error)".contains("2_Dense/config.json: activation_function torch.nn.modules.activation.Sigmoid is not supported"), "\(error)")
        }
        try original.write(toFile: config, atomically: true, encoding: .utf8)
        let modules = "\(folder)/modules.json"
        try String(contentsOfFile: modules, encoding: .utf8).replacingOccurrences(of: "normalize.Normalize", with: "lstm.LSTM")
            .write(toFile: modules, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelFolder.describe(FolderSource(folder))) { error in
            XCTAssertTrue("\(error)".contains("modules.json: the module sentence_transformers.base.modules.lstm.LSTM is not supported"), "\(error)")
        }
        try FileManager.default.removeItem(atPath: modules)
        try FileManager.default.copyItem(atPath: "\(dir)/model/modules.json", toPath: modules)
        XCTAssertThrowsError(try ModelFolder.describe(FolderSource(folder), pooling: .cls)) { error in
            XCTAssertTrue("\(error)".contains("a Dense module is read after mean pooling only"), "\(error)")
        }
    }
}
