import Foundation

/// One contiguous, 64-byte aligned, zero-initialised buffer of scalars. Parameters, gradients and
/// each optimizer moment live in one of these each, with the same `ParameterLayout`, so one loop
/// (or one collective) covers all tensors.
public final class FlatBuffer<T: KernelScalar> {
    public let count: Int
    public let base: UnsafeMutablePointer<T>

    public init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<T>.stride, alignment: 64)
        base = raw.bindMemory(to: T.self, capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { UnsafeMutableRawPointer(base).deallocate() }

    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: base, count: count) }
    public func zero() { base.update(repeating: 0, count: count) }
    public subscript(i: Int) -> T {
        get { base[i] }
        set { base[i] = newValue }
    }
    public var array: [T] { Array(buffer) }
}

/// A zero-initialised byte buffer (dropout masks). A class with a raw pointer, so kernels write
/// into it in place: an array property passed as `&array` could be copied on every call.
public final class ByteBuffer {
    public let count: Int
    public let base: UnsafeMutablePointer<UInt8>
    public init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { base.deallocate() }
}

/// A named tensor inside a flat buffer. Shapes are row-major, as in safetensors and PyTorch
/// (`Linear.weight` is [out, in]).
public struct TensorSpec: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    /// Whether AdamW applies weight decay to it (not to biases or LayerNorm, as transformers does).
    public let decays: Bool
    public var count: Int { shape.reduce(1, *) }
}

/// The layout of every flat buffer of a model: the names, shapes and offsets of its tensors.
public struct ParameterLayout: Sendable {
    public private(set) var tensors: [TensorSpec] = []
    public private(set) var count = 0
    private var indexByName: [String: Int] = [:]

    public init() {}

    /// Appends a tensor and returns its offset. Offsets are kept 16-element aligned.
    @discardableResult
    public mutating func add(_ name: String, shape: [Int], decays: Bool) -> Int {
        precondition(indexByName[name] == nil, "duplicate tensor \(name)")
        let offset = (count + 15) / 16 * 16
        tensors.append(TensorSpec(name: name, shape: shape, offset: offset, decays: decays))
        indexByName[name] = tensors.count - 1
        count = offset + shape.reduce(1, *)
        return offset
    }

    /// Takes tensor specs as they are (offsets into another layout's buffer): for writing a subset.
    mutating func adopt(_ specs: [TensorSpec]) {
        for s in specs {
            tensors.append(s)
            indexByName[s.name] = tensors.count - 1
            count = max(count, s.offset + s.count)
        }
    }

    public func spec(_ name: String) -> TensorSpec? { indexByName[name].map { tensors[$0] } }

    public func offset(of name: String) -> Int {
        guard let s = spec(name) else { preconditionFailure("no tensor \(name)") }
        return s.offset
    }
}
