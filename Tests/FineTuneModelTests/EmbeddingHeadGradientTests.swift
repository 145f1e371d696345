import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// The backward pass of a sentence-embedding model (encoder, pooling, the model's own Dense
/// module) from a given gradient of its embeddings, checked by central differences of
/// L = Σ w ⊙ e over parameters of every kind, on the tiny sentence-transformers folders (mean
/// pooling with a Tanh Dense module; CLS pooling).
final class EmbeddingHeadGradientTests: XCTestCase {
    let dir = "\(fixturesDirectory)/st-dense"
    let tiny = EncoderGoldenFixture(family: .bert)

    func check(folder: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let description = try ModelFolder.describe(FolderSource(folder))
        let bundle = description.build(task: .embedding)
        try description.loadWeights(into: bundle, seed: 0)
        let model = bundle.model
        model.dropout = DropoutRates(hidden: 0, attention: 0, classifier: 0)
        var batch = tiny.batch([[2, 5, 8, 9, 3], [2, 12, 13, 14, 15, 16, 3], [2, 7, 3]])
        batch.tokenTypeIDs = [Int32](repeating: 0, count: batch.tokenIDs.count)
        let D = try XCTUnwrap(model.embeddingWidth), B = batch.count
        var rng = SplitMix64(seed: 11)
        let w = (0..<(B * D)).map { _ in Float(rng.nextNormal()) }
        func loss() -> Double {
            _ = model.forward(batch, mode: .evaluation)
            var e = [Float](repeating: 0, count: B * D)
            model.copyLastEmbeddings(to: &e)
            return zip(e, w).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        model.gradients.base.update(repeating: 0, count: model.layout.count)
        _ = model.forward(batch, mode: .training(seed: 0, step: 0))
        model.setEmbeddingGradient(w)
        model.backward { _ in }
        var checked = 0
        for spec in model.layout.tensors where !spec.name.contains("position") && !spec.name.contains("token_type") {
            for _ in 0..<2 {
                var i = spec.offset + Int(rng.next() % UInt64(spec.count))
                // Word embeddings: a row the batch uses.
                if spec.name.contains("word_embeddings") { i = spec.offset + Int(batch.tokenIDs[1]) * spec.shape[1] + Int(rng.next() % UInt64(spec.shape[1])) }
                let saved = model.parameters[i], h: Float = 1e-2
                model.parameters[i] = saved + h; let up = loss()
                model.parameters[i] = saved - h; let down = loss()
                model.parameters[i] = saved
                let numeric = (up - down) / Double(2 * h), analytic = Double(model.gradients[i])
                XCTAssertEqual(analytic, numeric, accuracy: 1e-2 * abs(numeric) + 2e-4, "\(spec.name)[\(i - spec.offset)]: \(analytic) vs \(numeric)", file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 20, file: file, line: line)
    }

    func testMeanPoolingWithDenseModule() throws { try check(folder: "\(dir)/model") }
    func testCLSPooling() throws { try check(folder: "\(dir)/cls-model") }
}
