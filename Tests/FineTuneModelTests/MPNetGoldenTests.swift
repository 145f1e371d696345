import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation
import XCTest

/// MPNet against PyTorch/transformers on a tiny random MPNet (32 relative-position buckets;
/// `EncoderGoldenFixture`): the sequence of length 34 reaches the logarithmic buckets. For the
/// sequence classifier (MPNetForSequenceClassification), mean pooling with a linear head, and the
/// masked-LM head (MPNetForMaskedLM).
final class MPNetGoldenTests: XCTestCase {
    let fixture = EncoderGoldenFixture(family: .mpnet)

    func testSequenceClassifierMatchesTransformers() throws {
        let model = try fixture.checkSequenceClassifier()
        XCTAssertEqual(model.config.positionOffset, 2)
        XCTAssertNotNil(model.layout.spec("encoder.relative_attention_bias.weight"), "the relative bias is a parameter, and was compared")
    }

    func testMeanPoolingMatchesTransformers() throws {
        try fixture.checkMeanPooling(passthrough: ["pooler.dense.bias", "pooler.dense.weight"])
    }

    func testMaskedLMMatchesTransformers() throws {
        try fixture.checkMaskedLM(headTensors: ["lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias", "lm_head.bias"])
    }

    /// Every bucket of distances −600...600 as transformers computes it (Float logarithms included).
    func testRelativePositionBucketsMatchTransformers() throws {
        struct Buckets: Decodable { var relative: [Int]; var bucket: [Int] }
        let reference = try JSONDecoder().decode(Buckets.self, from: Data(contentsOf: URL(fileURLWithPath: "\(fixture.dir)/buckets.json")))
        XCTAssertEqual(reference.relative.map { relativePositionBucket($0, buckets: 32, maxDistance: 128) }, reference.bucket)
    }

    /// The relative bias of the longest sequence is shared by the shorter ones.
    func testPackingEqualsOneSequenceAtATime() throws {
        try fixture.checkPackingEqualsOneSequenceAtATime()
    }
}
