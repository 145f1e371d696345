import FineTuneIO
import FineTuneKernels
import FineTuneModels
import XCTest

/// The one map between BERT parameters and the tensors of each folder layout: both directions,
/// for every parameter of a classifier with either pooling.
final class TensorNamesTests: XCTestCase {
    func parameters(pooling: Pooling) throws -> [String] {
        let config = try EncoderConfig.decode(Data(#"{"vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16}"#.utf8), path: "c")
        return BertModel(config: config, pooling: pooling, task: .classification(labels: ["a", "b", "c"])).layout.tensors.map(\.name)
    }

    func testEveryParameterHasOneLocationAndMapsBack() throws {
        for (layout, pooling) in [(EncoderTensorNames.transformers(prefix: ""), Pooling.cls), (.transformers(prefix: "bert."), .cls),
                                  (.sentenceTransformers(), .mean)] {
            let names = try parameters(pooling: pooling)
            let locations = names.map(layout.location(of:))
            XCTAssertEqual(Set(locations).count, names.count, "\(layout): no two parameters share a tensor")
            XCTAssertEqual(locations.map(layout.parameter(at:)), names, "\(layout): the inverse")
        }
    }

    func testTheLayoutsHuggingFaceToolsWrite() {
        let seq = EncoderTensorNames.transformers(prefix: "bert.")
        XCTAssertEqual(seq.location(of: "encoder.layer.1.attention.self.query.weight"),
                       TensorLocation(file: "model.safetensors", name: "bert.encoder.layer.1.attention.self.query.weight"))
        XCTAssertEqual(seq.location(of: "classifier.weight"), TensorLocation(file: "model.safetensors", name: "classifier.weight"),
                       "the head is outside the bert. prefix")
        let st = EncoderTensorNames.sentenceTransformers()
        XCTAssertEqual(st.location(of: "classifier.bias"), TensorLocation(file: "2_Dense/model.safetensors", name: "linear.bias"))
        // A model with a Dense module of its own: that module is 2_Dense, the classifier 3_Dense.
        let projected = EncoderTensorNames.sentenceTransformers(projection: "2_Dense", head: "3_Dense")
        XCTAssertEqual(projected.location(of: "projection.weight"), TensorLocation(file: "2_Dense/model.safetensors", name: "linear.weight"))
        XCTAssertEqual(projected.location(of: "classifier.weight"), TensorLocation(file: "3_Dense/model.safetensors", name: "linear.weight"))
        XCTAssertEqual(projected.parameter(at: TensorLocation(file: "2_Dense/model.safetensors", name: "linear.bias")), "projection.bias")
        XCTAssertEqual(projected.parameter(at: TensorLocation(file: "3_Dense/model.safetensors", name: "linear.bias")), "classifier.bias")
        XCTAssertEqual(EncoderTensorNames.transformers(prefix: "").location(of: "projection.weight"), TensorLocation(file: "model.safetensors", name: "projection.weight"),
                       "checkpoints keep it at the top level")
        XCTAssertEqual(st.location(of: "embeddings.word_embeddings.weight"), TensorLocation(file: "model.safetensors", name: "embeddings.word_embeddings.weight"))
        // What is not a parameter of the layout: another layout's names, another file.
        XCTAssertNil(seq.parameter(at: TensorLocation(file: "model.safetensors", name: "encoder.layer.0.output.dense.weight")))
        XCTAssertNil(seq.parameter(at: TensorLocation(file: "2_Dense/model.safetensors", name: "linear.weight")))
        XCTAssertNil(st.parameter(at: TensorLocation(file: "model.safetensors", name: "classifier.weight")))
        XCTAssertEqual(seq.parameter(at: TensorLocation(file: "model.safetensors", name: "bert.embeddings.position_ids")), "embeddings.position_ids")
    }
}
