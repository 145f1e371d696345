import Foundation

/// The safetensors format (https://github.com/huggingface/safetensors):
///   8 bytes: N, the header length, unsigned little-endian
///   N bytes: a JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}
///            (writers pad it with spaces to a multiple of 8 so the data is aligned)
///   rest:    the tensor data, offsets relative to the start of this byte buffer, little-endian, row-major.
/// The tensors must tile the data exactly: no overlap, no gap, nothing past the end.
public enum SafetensorsDType: String, Sendable {
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
        let headerBytes = data.subdata(in: 8..<dataStart)
        guard let header = (try? JSONSerialization.jsonObject(with: headerBytes)) as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        var entries: [String: SafetensorsEntry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__[\(k)] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw fail("tensor \(name): not an object") }
            guard let dtypeName = info["dtype"] as? String, let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw fail("tensor \(name): unsupported or missing dtype \(String(describing: info["dtype"]))")
            }
            guard let shapeValues = info["shape"] as? [Any],
                  let shape = Optional(shapeValues.compactMap { ($0 as? NSNumber)?.intValue }),
                  shape.count == shapeValues.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor \(name): shape is not a list of non-negative integers")
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                  let begin = (offsets[0] as? NSNumber)?.intValue, let end = (offsets[1] as? NSNumber)?.intValue,
                  begin >= 0, end >= begin else {
                throw fail("tensor \(name): data_offsets is not [begin, end] with 0 <= begin <= end")
            }
            let entry = SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
            guard end - begin == entry.elementCount * dtype.byteSize else {
                throw fail("tensor \(name): data_offsets span \(end - begin) bytes but \(dtype.rawValue) \(shape) needs \(entry.elementCount * dtype.byteSize)")
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
        try read(e, into: &out)
        return out
    }

    /// Reads a floating-point tensor into `destination[0..<count]`.
    public func read(_ e: SafetensorsEntry, into destination: UnsafeMutablePointer<Float>) throws {
        guard e.dtype.isFloat else {
            throw FineTuneError("\(path): tensor \(e.name) has dtype \(e.dtype.rawValue), not a floating-point type")
        }
        let n = e.elementCount
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + e.begin
            switch e.dtype {
            case .f32:
                for i in 0..<n { destination[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f64:
                for i in 0..<n { destination[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .f16:
                for i in 0..<n { destination[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .bf16:
                for i in 0..<n { destination[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            default: break
            }
        }
    }

    private func read(_ e: SafetensorsEntry, into out: inout [Float]) throws {
        try out.withUnsafeMutableBufferPointer { try read(e, into: $0.baseAddress!) }
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

/// IEEE 754 binary16 to binary32, subnormals, infinities and NaN included.
@inlinable
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        // zero or subnormal: mantissa · 2^-24
        let magnitude = Float(mantissa) * 0x1.0p-24
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

/// Writes a safetensors file of F32 tensors (and optional I64 tensors), in the order added.
/// Values are copied when added.
public struct SafetensorsWriter {
    private var items: [(name: String, shape: [Int], dtype: String, bytes: Data)] = []
    public var metadata: [String: String] = [:]

    public init() {}

    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        precondition(floats.count == shape.reduce(1, *), "\(name): \(floats.count) values for shape \(shape)")
        // Little-endian hosts only (x86_64, aarch64): the bytes are already in file order.
        items.append((name, shape, "F32", Data(buffer: floats)))
    }
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }
    public mutating func add(_ name: String, shape: [Int], integers: [Int64]) {
        precondition(integers.count == shape.reduce(1, *))
        items.append((name, shape, "I64", integers.withUnsafeBufferPointer { Data(buffer: $0) }))
    }

    /// The complete file contents.
    public func serialized() -> Data {
        var offset = 0
        var headerParts: [String] = []
        if !metadata.isEmpty {
            let fields = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            headerParts.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        for item in items {
            headerParts.append("\(jsonString(item.name)):{\"dtype\":\"\(item.dtype)\",\"shape\":[\(item.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + item.bytes.count)]}")
            offset += item.bytes.count
        }
        var header = Array("{\(headerParts.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        var out = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for item in items { out.append(item.bytes) }
        return out
    }
}

/// A JSON string literal.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}
