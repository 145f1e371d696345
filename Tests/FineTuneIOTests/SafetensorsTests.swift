import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation
import XCTest

final class SafetensorsTests: XCTestCase {
    /// A file from a raw header string and data bytes.
    func file(header: String, data: [UInt8], pad: Bool = true) -> Data {
        var h = Array(header.utf8)
        while pad && h.count % 8 != 0 { h.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    func floatBytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    func testRoundTripWithMetadataAndAlignment() throws {
        let a: [Float] = [1, -2.5, 3e-8, .greatestFiniteMagnitude, 0, 7]
        let b: [Float] = [0.25]
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "pt", "note": "quote \" and \\ inside"]
        a.withUnsafeBufferPointer { writer.add("encoder.weight", shape: [2, 3], floats: $0) }
        b.withUnsafeBufferPointer { writer.add("bias", shape: [1], floats: $0) }
        writer.add("position_ids", shape: [1, 3], integers: [0, 1, 2])
        let bytes = try writer.serialized()
        let headerLength = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(headerLength % 8, 0, "the header is padded so the data starts 8-aligned")
        let f = try SafetensorsFile(data: bytes)
        XCTAssertEqual(f.metadata["note"], "quote \" and \\ inside")
        XCTAssertEqual(try f.floats("encoder.weight"), a)
        XCTAssertEqual(f.entries["encoder.weight"]?.shape, [2, 3])
        XCTAssertEqual(try f.floats("bias"), b)
        XCTAssertEqual(try f.integers("position_ids"), [0, 1, 2])
        XCTAssertThrowsError(try f.floats("position_ids"), "an integer tensor is not read as floats")
        XCTAssertThrowsError(try f.floats("missing"))
    }

    func testHalfAndBFloat16AreConverted() throws {
        // F16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, smallest subnormal = 0x0001, +inf = 0x7C00
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00]
        // BF16: the top half of a float32: 1.0 = 0x3F80, -3.0 = 0xC040, 0.15625 = 0x3E20
        let bf16: [UInt16] = [0x3F80, 0xC040, 0x3E20]
        let data = f16.withUnsafeBytes { Array($0) } + bf16.withUnsafeBytes { Array($0) }
        let header = #"{"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[10,16]}}"#
        let f = try SafetensorsFile(data: file(header: header, data: data))
        XCTAssertEqual(try f.floats("h"), [1, -2, 65504, Float(0x1.0p-24), .infinity])
        XCTAssertEqual(try f.floats("b"), [1, -3, 0.15625])
    }

    func assertRejected(_ header: String, data: [UInt8], containing phrase: String, file path: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafetensorsFile(data: file(header: header, data: data), path: "bad.safetensors"), file: path, line: line) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("bad.safetensors"), "names the file: \(message)", file: path, line: line)
            XCTAssertTrue(message.contains(phrase), "\"\(message)\" should mention \"\(phrase)\"", file: path, line: line)
        }
    }

    func testRejectsOverlapGapAndOverrun() {
        let eight = floatBytes([1, 2])
        assertRejected(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                       data: eight, containing: "overlaps")
        assertRejected(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight, containing: "gap")
        assertRejected(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: eight, containing: "past the end")
        assertRejected(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: eight, containing: "not covered")
        assertRejected(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight, containing: "needs 12")
        assertRejected(#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, data: eight, containing: "dtype")
        assertRejected(#"[1,2]"#, data: eight, containing: "not a JSON object")
    }

    func testRejectsHeaderLengthPastTheEnd() {
        var bytes = Data()
        withUnsafeBytes(of: UInt64(1000).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: Array("{}".utf8))
        XCTAssertThrowsError(try SafetensorsFile(data: bytes, path: "short.safetensors")) { error in
            XCTAssertTrue(String(describing: error).contains("runs past the end"))
        }
        XCTAssertThrowsError(try SafetensorsFile(data: Data([1, 2, 3]), path: "tiny.safetensors"))
    }

    func testReadsAFileFromDiskAndReportsAMissingOne() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let values: [Float] = (0..<1000).map { Float($0) / 7 }
        var w = SafetensorsWriter()
        values.withUnsafeBufferPointer { w.add("x", shape: [10, 100], floats: $0) }
        try AtomicFiles.write(w.serialized(), to: "\(dir)/m.safetensors")
        XCTAssertEqual(try SafetensorsFile(path: "\(dir)/m.safetensors").floats("x"), values)
        XCTAssertThrowsError(try SafetensorsFile(path: "\(dir)/none.safetensors")) { error in
            XCTAssertTrue(String(describing: error).contains("\(dir)/none.safetensors"))
        }
    }

    func testModelFolderRejectsMissingWrongShapeAndUnusedTensors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mf-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = MLP(config: MLPConfig(inputSize: 3, hiddenSizes: [4], activation: .relu, dropout: 0, task: .classification(labels: ["p", "q"])))
        model.initialize(seed: 1)
        try AtomicFiles.writeFolder(dir, files: ModelFiles.files(of: model))
        let loaded = try ModelFolder.load(dir)
        XCTAssertEqual(loaded.model.parameters.array, model.parameters.array)
        XCTAssertEqual((loaded.model as? MLP)?.config, model.config)

        func rewrite(_ edit: (inout SafetensorsWriter) -> Void) throws {
            var w = SafetensorsWriter()
            edit(&w)
            try AtomicFiles.write(w.serialized(), to: "\(dir)/model.safetensors")
        }
        let four = [Float](repeating: 0, count: 64), eight = [Float](repeating: 0, count: 64)
        try four.withUnsafeBufferPointer { f in
            try rewrite { w in
                for spec in model.layout.tensors where spec.name != "classifier.bias" {
                    w.add(spec.name, shape: spec.shape, floats: UnsafeBufferPointer(rebasing: f[0..<spec.count]))
                }
            }
        }
        XCTAssertThrowsError(try ModelFolder.load(dir)) { XCTAssertTrue(String(describing: $0).contains("missing tensor classifier.bias")) }
        try eight.withUnsafeBufferPointer { f in
            try rewrite { w in
                for spec in model.layout.tensors {
                    let shape = spec.name == "layers.0.bias" ? [2, 2] : spec.shape
                    w.add(spec.name, shape: shape, floats: UnsafeBufferPointer(rebasing: f[0..<spec.count]))
                }
                w.add("pooler.dense.weight", shape: [1], floats: UnsafeBufferPointer(rebasing: f[0..<1]))
            }
        }
        XCTAssertThrowsError(try ModelFolder.load(dir)) { XCTAssertTrue(String(describing: $0).contains("layers.0.bias has shape [2, 2]")) }
    }

    func testConfigErrors() {
        func parse(_ json: String) throws -> MLPConfig { try MLPConfig.decode(Data(json.utf8), path: "m/config.json") }
        XCTAssertThrowsError(try parse(#"{"model_type":"roberta"}"#)) { XCTAssertTrue(String(describing: $0).contains("m/config.json: model_type \"roberta\" is not an MLP")) }
        XCTAssertThrowsError(try parse(#"{"model_type":"mlp","input_size":0,"hidden_sizes":[]}"#)) { XCTAssertTrue(String(describing: $0).contains("input_size")) }
        XCTAssertThrowsError(try parse(#"{"model_type":"mlp","input_size":3,"hidden_sizes":[2]}"#)) { XCTAssertTrue(String(describing: $0).contains("id2label")) }
        XCTAssertEqual(try parse(#"{"model_type":"mlp","input_size":3,"hidden_sizes":[],"problem_type":"regression"}"#).task, .regression)
        XCTAssertEqual(try parse(#"{"model_type":"mlp","input_size":3,"hidden_sizes":[5],"id2label":{"1":"y","0":"x"}}"#).task,
                       .classification(labels: ["x", "y"]))
    }
}
