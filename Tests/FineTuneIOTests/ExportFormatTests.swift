import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

/// The folders written for best/ and final/ have the files, tensor names, shapes and config fields
/// that transformers (BertForSequenceClassification) and sentence-transformers (Transformer + mean
/// Pooling + Dense) write themselves: Fixtures/tiny-bert/export_reference.json, made by
/// Tests/fixture-scripts/make_bert_fixtures.py. (Loading them in Python: launch/check-export.py.)
final class ExportFormatTests: XCTestCase {
    let dir = "\(fixturesDirectory)/tiny-bert"

    func reference(_ kind: String) throws -> [String: [String: Any]] {
        let all = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/export_reference.json"))) as! [String: Any]
        return all[kind] as! [String: [String: Any]]
    }

    func tensors(_ data: Data) throws -> [String: [Int]] {
        try SafetensorsFile(data: data).entries.mapValues(\.shape)
    }

    func json(_ data: Data?) -> [String: Any]? {
        data.flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] }
    }

    /// Every field of the reference (but versions) has the same value in ours.
    func assertFields(_ ours: [String: Any]?, _ theirs: [String: Any]?, ignoring: Set<String> = [], _ file: String) {
        guard let ours, let theirs else { return XCTFail("\(file): missing") }
        for (key, value) in theirs where !ignoring.contains(key) {
            guard let mine = ours[key] else { XCTFail("\(file): no field \(key)"); continue }
            XCTAssertEqual(NSDictionary(dictionary: ["v": mine]), NSDictionary(dictionary: ["v": value]), "\(file): \(key)")
        }
    }

    func testSequenceClassifierExportMatchesTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/classifier"))
        let model = description.build(task: description.task!)
        try description.loadWeights(into: model, seed: 0)
        let files = try ModelFiles.exportFiles(model)
        let ref = try reference("transformers_sequence_classification")
        XCTAssertEqual(try tensors(files["model.safetensors"]!), (ref["model.safetensors"]!["tensors"] as! [String: [Int]]))
        assertFields(json(files["config.json"]), ref["config.json"]!["json"] as? [String: Any],
                     ignoring: ["transformers_version", "dtype"], "config.json")
        // And the export loads back with the same weights.
        let back = try ModelFolder.describe(MemorySource(files, name: "export"))
        let again = back.build(task: back.task!)
        try back.loadWeights(into: again, seed: 1)
        XCTAssertEqual(again.model.parameters.array, model.model.parameters.array)
    }

    func testMeanPoolingExportMatchesSentenceTransformers() throws {
        let description = try ModelFolder.describe(FolderSource("\(dir)/base"), pooling: .mean)
        let model = description.build(task: .classification(labels: ["neg", "neu", "pos"]))
        try description.loadWeights(into: model, seed: 3)
        let files = try ModelFiles.exportFiles(model)
        let ref = try reference("sentence_transformers_mean_dense")
        for name in ["model.safetensors", "2_Dense/model.safetensors"] {
            XCTAssertEqual(try tensors(files[name]!), (ref[name]!["tensors"] as! [String: [Int]]), name)
        }
        for name in ["modules.json", "1_Pooling/config.json", "2_Dense/config.json", "sentence_bert_config.json"] {
            XCTAssertNotNil(files[name], name)
        }
        XCTAssertEqual(try JSONSerialization.jsonObject(with: files["modules.json"]!) as? NSArray,
                       ref["modules.json"]!["json"] as? NSArray)
        assertFields(json(files["1_Pooling/config.json"]), ref["1_Pooling/config.json"]!["json"] as? [String: Any], "1_Pooling/config.json")
        assertFields(json(files["2_Dense/config.json"]), ref["2_Dense/config.json"]!["json"] as? [String: Any], "2_Dense/config.json")
        assertFields(json(files["sentence_bert_config.json"]), ref["sentence_bert_config.json"]!["json"] as? [String: Any], "sentence_bert_config.json")
        assertFields(json(files["config_sentence_transformers.json"]), ref["config_sentence_transformers.json"]!["json"] as? [String: Any],
                     ignoring: ["__version__"], "config_sentence_transformers.json")
        // use_cache is a generation-time switch that sentence-transformers turns off when saving.
        assertFields(json(files["config.json"]), ref["config.json"]!["json"] as? [String: Any],
                     ignoring: ["transformers_version", "dtype", "use_cache"], "config.json")
        let config = json(files["config.json"])!
        XCTAssertEqual(config["id2label"] as? [String: String], ["0": "neg", "1": "neu", "2": "pos"], "labels travel in config.json")
        // Loads back as a mean-pooled model with its head and labels.
        let back = try ModelFolder.describe(MemorySource(files, name: "export"))
        XCTAssertEqual(back.task, .classification(labels: ["neg", "neu", "pos"]))
        let again = back.build(task: back.task!)
        XCTAssertEqual((again.model as! BertModel).pooling, .mean)
        try back.loadWeights(into: again, seed: 9)
        XCTAssertEqual(again.model.parameters.array, model.model.parameters.array)
    }
}
