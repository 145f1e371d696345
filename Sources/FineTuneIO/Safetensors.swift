import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// The safetensors format (https://github.com/huggingface/safetensors):
///   8 bytes: N, the header length, unsigned little-endian
///   N bytes: a JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}
///            (writers pad it with spaces to a multiple of 8 so the data is aligned)
///   rest:    the tensor data, offsets relative to the start of this byte buffer, little-endian, row-major.
/// The tensors must tile the data exactly: no overlap, no gap, nothing past the end.
public enum SafetensorsDType: String, Sendable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
    public var isFloat: Bool { [.f64, .f32, .f16, .bf16].contains(self) }
}

public struct SafetensorsEntry: Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let begin: Int
    public let end: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// One tensor's entry in the header, as written.
private struct HeaderEntry: Codable {
    var dtype: String
    var shape: [Int]
    var dataOffsets: [Int]
    enum CodingKeys: String, CodingKey { case dtype, shape, dataOffsets = "data_offsets" }
}

/// A safetensors file opened for reading. The file is memory-mapped: tensors are converted to
/// Float only when asked for, so a large checkpoint costs only the pages actually read.
public final class SafetensorsFile {
    public let path: String
    public let entries: [String: SafetensorsEntry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    public convenience init(path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw FineTuneError("\(path): cannot read safetensors file (\(error.localizedDescription))")
        }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.data = data
        func fail(_ why: String) -> FineTuneError { FineTuneError("\(path): invalid safetensors file: \(why)") }
        guard data.count >= 8 else { throw fail("\(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= 100_000_000 else { throw fail("header length \(headerLength) is over 100 MB") }
        guard 8 + Int(headerLength) <= data.count else {
            throw fail("header length \(headerLength) runs past the end of the file (\(data.count) bytes)")
        }
        dataStart = 8 + Int(headerLength)
        let parsed: JSONValue
        do { parsed = try StrictJSON.parse(data.subdata(in: 8..<dataStart)) } catch {
            throw fail("the header is not valid JSON: \(error)")
        }
        guard case .object(let header) = parsed else { throw fail("the header is not a JSON object") }
        var entries: [String: SafetensorsEntry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard case .object(let m) = value else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v.string else { throw fail("__metadata__[\(k)] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard case .object(let info) = value else { throw fail("tensor \(name): not an object") }
            guard let dtypeName = info["dtype"]?.string else { throw fail("tensor \(name): no dtype") }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw fail("tensor \(name): unsupported dtype \(dtypeName) (supported: F32, F16, BF16, F64 and integer types)")
            }
            guard case .array(let shapeValues)? = info["shape"],
                  let shape = Optional(shapeValues.compactMap { v -> Int? in
                      guard let n = v.number, n >= 0, n == n.rounded(), n < 1e15 else { return nil }
                      return Int(n)
                  }), shape.count == shapeValues.count else {
                throw fail("tensor \(name): shape is not a list of non-negative integers")
            }
            guard case .array(let offsets)? = info["data_offsets"], offsets.count == 2,
                  let b = offsets[0].number, let e = offsets[1].number, b >= 0, e >= b, e < 1e15, b == b.rounded(), e == e.rounded() else {
                throw fail("tensor \(name): data_offsets is not [begin, end] with 0 <= begin <= end")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d)
                return (p, acc.1 || o)
            }
            guard !overflow, elements <= Int(1e15) else { throw fail("tensor \(name): shape \(shape) is too large") }
            let entry = SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: Int(b), end: Int(e))
            guard entry.end - entry.begin == elements * dtype.byteSize else {
                throw fail("tensor \(name): data_offsets span \(entry.end - entry.begin) bytes but \(dtype.rawValue) \(shape) needs \(elements * dtype.byteSize)")
            }
            entries[name] = entry
        }
        // The tensors must tile the data buffer exactly.
        let dataLength = data.count - dataStart
        var cursor = 0
        var previous = "the start of the data"
        for e in entries.values.sorted(by: { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }) {
            if e.begin < cursor { throw fail("tensor \(e.name) (bytes \(e.begin)..<\(e.end)) overlaps \(previous)") }
            if e.begin > cursor { throw fail("gap of \(e.begin - cursor) bytes before tensor \(e.name) (after \(previous))") }
            cursor = e.end
            previous = "tensor \(e.name) (bytes \(e.begin)..<\(e.end))"
        }
        if cursor > dataLength { throw fail("\(previous) runs past the end of the data (\(dataLength) bytes)") }
        if cursor < dataLength { throw fail("\(dataLength - cursor) bytes after the last tensor are not covered by any tensor") }
        self.entries = entries
        self.metadata = metadata
    }

    public var names: [String] { entries.keys.sorted() }

    /// Reads a floating-point tensor (F32, F16, BF16 or F64) converted to Float.
    public func floats(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw FineTuneError("\(path): no tensor named \(name)") }
        var out = [Float](repeating: 0, count: e.elementCount)
        try out.withUnsafeMutableBufferPointer { try read(e, into: $0.baseAddress!) }
        return out
    }

    /// Reads a floating-point tensor into `destination[0..<count]`.
    public func read(_ e: SafetensorsEntry, into destination: UnsafeMutablePointer<Float>) throws {
        guard e.dtype.isFloat else {
            throw FineTuneError("\(path): tensor \(e.name) has dtype \(e.dtype.rawValue), not a floating-point type")
        }
        data.withUnsafeBytes { raw in
            convertStoredFloats(raw.baseAddress! + dataStart + e.begin, bytesPerElement: e.dtype.byteSize, isBrainFloat: e.dtype == .bf16,
                                into: destination, count: e.elementCount)
        }
    }

    /// Reads an integer tensor (I64, I32, I16, I8, U8) as Int64.
    public func integers(_ name: String) throws -> [Int64] {
        guard let e = entries[name] else { throw FineTuneError("\(path): no tensor named \(name)") }
        let n = e.elementCount
        return try data.withUnsafeBytes { raw -> [Int64] in
            let src = raw.baseAddress! + dataStart + e.begin
            switch e.dtype {
            case .i64: return (0..<n).map { Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .i32: return (0..<n).map { Int64(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            case .i16: return (0..<n).map { Int64(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
            case .i8: return (0..<n).map { Int64(src.load(fromByteOffset: $0, as: Int8.self)) }
            case .u8, .bool: return (0..<n).map { Int64(src.load(fromByteOffset: $0, as: UInt8.self)) }
            default: throw FineTuneError("\(path): tensor \(name) has dtype \(e.dtype.rawValue), not an integer type")
            }
        }
    }
}

/// Writes a safetensors file of F32 tensors (and optional I64 tensors), in the order added.
/// Values are copied when added.
public struct SafetensorsWriter {
    private var items: [(name: String, shape: [Int], dtype: SafetensorsDType, bytes: Data)] = []
    public var metadata: [String: String] = [:]

    public init() {}

    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        precondition(floats.count == shape.reduce(1, *), "\(name): \(floats.count) values for shape \(shape)")
        // Little-endian hosts only (x86_64, aarch64): the bytes are already in file order.
        items.append((name, shape, .f32, Data(buffer: floats)))
    }
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }
    public mutating func add(_ name: String, shape: [Int], integers: [Int64]) {
        precondition(integers.count == shape.reduce(1, *))
        items.append((name, shape, .i64, integers.withUnsafeBufferPointer { Data(buffer: $0) }))
    }

    /// The complete file contents.
    public func serialized() throws -> Data {
        var header: [String: JSONValue] = [:]
        var offset = 0
        for item in items {
            header[item.name] = try JSONValue(encoding: HeaderEntry(dtype: item.dtype.rawValue, shape: item.shape,
                                                                      dataOffsets: [offset, offset + item.bytes.count]))
            offset += item.bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var headerBytes = [UInt8](try encoder.encode(header))
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
        var out = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for item in items { out.append(item.bytes) }
        return out
    }
}
