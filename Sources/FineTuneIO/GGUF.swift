import FineTuneKernels
import Foundation

/// A GGUF file (llama.cpp's model format, version 2 or 3): its metadata, its tensor table, and
/// tensors dequantized to float32 (F32, F16, Q8_0, Q4_0, Q4_1). The file is memory-mapped; every
/// length, count and offset is checked against the file before it is used, and a problem is an
/// error naming the file and what is wrong.
///
/// Layout (little-endian): "GGUF", version u32, tensor count u64, metadata count u64; metadata as
/// (string key, u32 type, value); tensor infos as (string name, u32 dims, u64 dims..., u32 ggml
/// type, u64 offset); then the data, from the next multiple of `general.alignment` (default 32),
/// each tensor at its offset. Dimensions run fastest first: a PyTorch [out, in] weight is [in, out].
public final class GGUFFile {
    public enum Value: Equatable, Sendable {
        case unsigned(UInt64), signed(Int64), float(Double), bool(Bool), string(String), array([Value])

        public var string: String? { if case .string(let s) = self { return s }; return nil }
        public var int: Int? {
            switch self {
            case .unsigned(let u): return u <= UInt64(Int.max) ? Int(u) : nil
            case .signed(let i): return Int(i)
            default: return nil
            }
        }
        public var double: Double? {
            switch self {
            case .float(let d): return d
            case .unsigned, .signed: return int.map(Double.init)
            default: return nil
            }
        }
        public var array: [Value]? { if case .array(let a) = self { return a }; return nil }
    }

    /// The ggml tensor types this reader dequantizes.
    public enum TensorType: UInt32, Sendable {
        case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8

        /// Elements per block and bytes per block.
        var block: (elements: Int, bytes: Int) {
            switch self {
            case .f32: return (1, 4)
            case .f16: return (1, 2)
            case .q4_0: return (32, 18)
            case .q4_1: return (32, 20)
            case .q8_0: return (32, 34)
            }
        }
    }

    public struct TensorInfo: Sendable {
        public let name: String
        /// GGUF order: the fastest-varying dimension first.
        public let dimensions: [Int]
        public let type: TensorType
        /// Byte offset from the start of the data section, and the byte count.
        public let offset: Int, byteCount: Int
        public var elementCount: Int { dimensions.reduce(1, *) }
        /// PyTorch order (slowest first): [out, in] for a weight.
        public var shape: [Int] { dimensions.reversed() }
    }

    public let path: String
    public let version: Int
    public let metadata: [String: Value]
    /// In file order.
    public let tensors: [TensorInfo]
    public let tensorsByName: [String: TensorInfo]
    public let dataOffset: Int
    /// What keeps `bytes` alive: the mapped file, or a copy of bytes given in memory.
    private let storage: AnyObject
    private let bytes: UnsafeBufferPointer<UInt8>

    public convenience init(path: String) throws {
        let file = try MappedFile(path: path)
        try self.init(bytes: file.bytes, storage: file, path: path)
    }

    /// A GGUF file's bytes in memory (`path` names it in errors).
    public convenience init(data: Data, path: String) throws {
        let copy = OwnedBytes(data)
        try self.init(bytes: copy.bytes, storage: copy, path: path)
    }

    private init(bytes: UnsafeBufferPointer<UInt8>, storage: AnyObject, path: String) throws {
        self.path = path
        self.storage = storage
        self.bytes = bytes
        var reader = Reader(bytes: bytes, path: path)
        guard bytes.count >= 4, Array(bytes[0..<4]) == Array("GGUF".utf8) else {
            throw FineTuneError("\(path): not a GGUF file (it does not start with \"GGUF\")")
        }
        reader.position = 4
        let version = Int(try reader.u32("the version"))
        guard version == 2 || version == 3 else { throw FineTuneError("\(path): GGUF version \(version) is not supported (2 and 3 are)") }
        self.version = version
        let tensorCount = try reader.count("the tensor count", atMost: bytes.count / 8)
        let metadataCount = try reader.count("the metadata count", atMost: bytes.count / 8)
        var metadata: [String: Value] = [:]
        for i in 0..<metadataCount {
            let key = try reader.string("the key of metadata entry \(i)")
            let type = try reader.u32("the type of \(key)")
            if metadata[key] != nil { throw FineTuneError("\(path): metadata key \(key) appears twice") }
            metadata[key] = try reader.value(type: type, what: key)
        }
        self.metadata = metadata
        var tensors: [TensorInfo] = []
        var byName: [String: TensorInfo] = [:]
        for i in 0..<tensorCount {
            let name = try reader.string("the name of tensor \(i)")
            let rank = Int(try reader.u32("the dimension count of \(name)"))
            guard (1...4).contains(rank) else { throw FineTuneError("\(path): tensor \(name) has \(rank) dimensions (1 to 4 expected)") }
            var dimensions: [Int] = []
            var elements = 1
            for d in 0..<rank {
                let n = try reader.count("dimension \(d) of \(name)", atMost: bytes.count * 2)
                let (product, overflow) = elements.multipliedReportingOverflow(by: n)
                guard !overflow, product <= bytes.count * 2 else { throw FineTuneError("\(path): tensor \(name) is larger than the file") }
                elements = product
                dimensions.append(n)
            }
            let rawType = try reader.u32("the type of \(name)")
            guard let type = TensorType(rawValue: rawType) else {
                throw FineTuneError("\(path): tensor \(name) has ggml type \(rawType), which is not supported (F32, F16, Q8_0, Q4_0 and Q4_1 are)")
            }
            guard elements % type.block.elements == 0, dimensions[0] % type.block.elements == 0 else {
                throw FineTuneError("\(path): tensor \(name) has \(dimensions[0]) elements per row, not a multiple of its type's block of \(type.block.elements)")
            }
            let offset = try reader.count("the offset of \(name)", atMost: bytes.count)
            let info = TensorInfo(name: name, dimensions: dimensions, type: type, offset: offset,
                                  byteCount: elements / type.block.elements * type.block.bytes)
            if byName[name] != nil { throw FineTuneError("\(path): tensor \(name) appears twice") }
            tensors.append(info)
            byName[name] = info
        }
        let alignment = metadata["general.alignment"]?.int ?? 32
        guard alignment > 0 && alignment & (alignment - 1) == 0 else { throw FineTuneError("\(path): general.alignment \(alignment) is not a power of two") }
        dataOffset = (reader.position + alignment - 1) / alignment * alignment
        for t in tensors where t.offset % alignment != 0 || dataOffset + t.offset + t.byteCount > bytes.count {
            throw FineTuneError("\(path): tensor \(t.name)'s data (bytes \(t.offset)..<\(t.offset + t.byteCount) of the data section) " +
                                (t.offset % alignment != 0 ? "is not aligned to \(alignment)" : "runs past the end of the file (\(bytes.count) bytes)"))
        }
        self.tensors = tensors
        tensorsByName = byName
    }

    /// A tensor's values as float32, in GGUF order (the first dimension fastest: row-major for PyTorch's shape).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensorsByName[name] else { throw FineTuneError("\(path): no tensor \(name)") }
        var out = [Float](repeating: 0, count: t.elementCount)
        let raw = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[(dataOffset + t.offset)..<(dataOffset + t.offset + t.byteCount)])
        out.withUnsafeMutableBufferPointer { GGUFFile.dequantize(raw, type: t.type, into: $0) }
        return out
    }

    /// Dequantizes `raw` (whole blocks of `type`) into `out` (llama.cpp's dequantize_row_* formulas).
    static func dequantize(_ raw: UnsafeRawBufferPointer, type: TensorType, into out: UnsafeMutableBufferPointer<Float>) {
        func half(_ at: Int) -> Float { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self))) }
        switch type {
        case .f32:
            for i in out.indices { out[i] = raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for i in out.indices { out[i] = half(2 * i) }
        case .q8_0:
            for b in 0..<(out.count / 32) {
                let base = b * 34, d = half(base)
                for j in 0..<32 { out[b * 32 + j] = Float(Int8(bitPattern: raw[base + 2 + j])) * d }
            }
        case .q4_0:
            // Low nibbles are elements 0..15 of the block, high nibbles 16..31; values q - 8.
            for b in 0..<(out.count / 32) {
                let base = b * 18, d = half(base)
                for j in 0..<16 {
                    let q = raw[base + 2 + j]
                    out[b * 32 + j] = Float(Int(q & 0x0F) - 8) * d
                    out[b * 32 + j + 16] = Float(Int(q >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<(out.count / 32) {
                let base = b * 20, d = half(base), m = half(base + 2)
                for j in 0..<16 {
                    let q = raw[base + 4 + j]
                    out[b * 32 + j] = Float(q & 0x0F) * d + m
                    out[b * 32 + j + 16] = Float(q >> 4) * d + m
                }
            }
        }
    }

    /// A copy of bytes that lives as long as the file object.
    final class OwnedBytes {
        let bytes: UnsafeBufferPointer<UInt8>
        init(_ data: Data) {
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(data.count, 1))
            _ = data.copyBytes(to: buffer)
            bytes = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(buffer)[0..<data.count])
        }
        deinit { UnsafeMutableRawPointer(mutating: bytes.baseAddress!).deallocate() }
    }

    /// A bounds-checked cursor over the header.
    struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        let path: String
        var position = 0

        mutating func take(_ n: Int, _ what: String) throws -> Int {
            guard n >= 0, position <= bytes.count - n else {
                throw FineTuneError("\(path): the file ends inside \(what) (byte \(position) of \(bytes.count))")
            }
            defer { position += n }
            return position
        }
        mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
            let at = try take(MemoryLayout<T>.size, what)
            return T(littleEndian: UnsafeRawBufferPointer(bytes).loadUnaligned(fromByteOffset: at, as: T.self))
        }
        mutating func u32(_ what: String) throws -> UInt32 { try load(UInt32.self, what) }
        /// A u64 count or size, at most `limit` (a larger one cannot be right for this file).
        mutating func count(_ what: String, atMost limit: Int) throws -> Int {
            let n = try load(UInt64.self, what)
            guard n <= UInt64(max(limit, 0)) else { throw FineTuneError("\(path): \(what) is \(n), more than the file can hold") }
            return Int(n)
        }
        mutating func string(_ what: String) throws -> String {
            let n = try count("the length of \(what)", atMost: bytes.count)
            let at = try take(n, what)
            guard let s = String(validating: UnsafeBufferPointer(rebasing: bytes[at..<(at + n)]), as: UTF8.self) else {
                throw FineTuneError("\(path): \(what) is not UTF-8")
            }
            return s
        }
        mutating func value(type: UInt32, what: String, depth: Int = 0) throws -> Value {
            switch type {
            case 0: return .unsigned(UInt64(try load(UInt8.self, what)))
            case 1: return .signed(Int64(try load(Int8.self, what)))
            case 2: return .unsigned(UInt64(try load(UInt16.self, what)))
            case 3: return .signed(Int64(try load(Int16.self, what)))
            case 4: return .unsigned(UInt64(try load(UInt32.self, what)))
            case 5: return .signed(Int64(try load(Int32.self, what)))
            case 6: return .float(Double(Float(bitPattern: try load(UInt32.self, what))))
            case 7:
                let b = try load(UInt8.self, what)
                guard b <= 1 else { throw FineTuneError("\(path): \(what) is a boolean of value \(b)") }
                return .bool(b == 1)
            case 8: return .string(try string(what))
            case 9:
                guard depth < 4 else { throw FineTuneError("\(path): \(what) nests arrays too deeply") }
                let elementType = try u32("the element type of \(what)")
                let n = try count("the length of \(what)", atMost: bytes.count - position)
                var values: [Value] = []
                values.reserveCapacity(min(n, 1 << 16))  // a count the file cannot back fails at its end, not in an allocation
                for i in 0..<n { values.append(try value(type: elementType, what: "\(what)[\(i)]", depth: depth + 1)) }
                return .array(values)
            case 10: return .unsigned(try load(UInt64.self, what))
            case 11: return .signed(try load(Int64.self, what))
            case 12: return .float(Double(bitPattern: try load(UInt64.self, what)))
            default: throw FineTuneError("\(path): \(what) has metadata type \(type), which GGUF does not define")
            }
        }
    }
}
