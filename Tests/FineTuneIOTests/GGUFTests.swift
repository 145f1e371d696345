@testable import FineTuneIO
import Foundation
import XCTest

/// The GGUF reader against the `gguf` package's writer and dequantizer (Tests/fixture-scripts/make_gguf_fixture.py).
final class GGUFTests: FolderTestCase {
    let path = "\(fixturesDirectory)/gguf/tiny.gguf"

    func testMetadataTensorTableAndDequantizedValuesMatchTheGGUFPackage() throws {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(fixturesDirectory)/gguf/reference.json"))) as! [String: Any]
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.metadata["general.architecture"]?.string, "llama")
        XCTAssertEqual(file.metadata["llama.block_count"], .unsigned(2))
        XCTAssertEqual(file.metadata["llama.rope.freq_base"]?.double, 100000)
        XCTAssertEqual(file.metadata["tokenizer.ggml.add_bos_token"], .bool(false))
        XCTAssertEqual(file.metadata["general.name"]?.string, "tiny test model ünï")
        XCTAssertEqual(file.metadata["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), ["<|endoftext|>", "a", "Ġb", "ĊĊ"])
        XCTAssertEqual(file.metadata["tokenizer.ggml.token_type"]?.array?.compactMap(\.int), [3, 1, 1, 1])
        XCTAssertEqual(file.metadata["llama.context_length"], .signed(-7))
        XCTAssertEqual(file.metadata["llama.vocab_size"], .unsigned(4))
        XCTAssertEqual(file.metadata["test.double"], .float(0.1))
        let tensors = reference["tensors"] as! [String: [String: Any]]
        let types = reference["types"] as! [String: Int]
        XCTAssertEqual(Set(file.tensors.map(\.name)), Set(tensors.keys))
        for (name, expected) in tensors {
            let info = file.tensorsByName[name]!
            XCTAssertEqual(info.shape, expected["shape"] as! [Int], name)
            XCTAssertEqual(Int(info.type.rawValue), types[name], name)
            let want = (expected["values"] as! [NSNumber]).map(\.floatValue)
            let got = try file.floats(name)
            XCTAssertEqual(got.count, want.count, name)
            for (g, w) in zip(got, want) { XCTAssertEqual(g, w, accuracy: 1e-6 * max(1, abs(w)), name) }
        }
        XCTAssertThrowsError(try file.floats("nosuch")) { XCTAssertTrue("\($0)".contains("no tensor nosuch"), "\($0)") }
    }

    /// Every truncation, a wrong magic, an unsupported type and a tensor beyond the end: an error naming the file, never a crash.
    func testDamagedFilesAreErrorsNamingTheFile() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        func read(_ data: Data) -> String? {
            let file = write("x.gguf", data)
            do { let g = try GGUFFile(path: file); for t in g.tensors { _ = try g.floats(t.name) }; return nil } catch { return "\(error)" }
        }
        // The file may end in alignment padding after the last tensor's data: cutting that is no damage.
        let whole = try GGUFFile(path: path)
        let needed = whole.dataOffset + whole.tensors.map { $0.offset + $0.byteCount }.max()!
        XCTAssertNil(read(bytes.prefix(needed)))
        for length in 0..<needed {
            let error = read(bytes.prefix(length))
            XCTAssertNotNil(error, "a file cut to \(length) bytes was read")
            if let error { XCTAssertTrue(error.contains("x.gguf"), error) }
        }
        var magic = bytes; magic[0] = UInt8(ascii: "X")
        XCTAssertTrue(read(magic)?.contains("not a GGUF file") == true)
        // The first tensor's type field: find "f32" in the tensor table and patch the u32 after its dimensions.
        let name = Data("f32".utf8)
        let at = bytes.range(of: Data([3, 0, 0, 0, 0, 0, 0, 0]) + name)!.upperBound + 4 + 16
        var type = bytes; type[at] = 12  // Q4_K
        XCTAssertTrue(read(type)?.contains("ggml type 12, which is not supported") == true, read(type) ?? "read")
    }
}
