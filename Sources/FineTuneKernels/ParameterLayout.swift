/// A named tensor inside a flat buffer: its shape (row-major, as in safetensors and PyTorch:
/// `Linear.weight` is [out, in]) and where it starts.
public struct TensorSpec: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    /// Whether AdamW applies weight decay to it (not to biases or LayerNorm, as transformers does).
    public let decays: Bool
    public init(name: String, shape: [Int], offset: Int, decays: Bool) {
        self.name = name; self.shape = shape; self.offset = offset; self.decays = decays
    }
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// The layout of every flat buffer of a model: the names, shapes and offsets of its tensors.
/// Parameters, gradients and optimizer moments share it.
public struct ParameterLayout: Sendable {
    public private(set) var tensors: [TensorSpec] = []
    /// Elements a buffer of this layout needs (the last tensor's end).
    public private(set) var count = 0
    private var indexByName: [String: Int] = [:]

    public init() {}

    /// Appends a tensor, 16-element aligned, and returns it.
    @discardableResult
    public mutating func add(_ name: String, shape: [Int], decays: Bool) -> TensorSpec {
        append(name, shape: shape, decays: decays, offset: (count + 15) / 16 * 16)
    }

    /// Appends tensors back to back (the first 16-element aligned, the rest without a gap) and
    /// returns them and one view spanning them all: e.g. the query, key and value weights [C, C]
    /// each, which then form one [3C, C] matrix for a single product.
    public mutating func addContiguous(_ parts: [(name: String, shape: [Int])], decays: Bool, fusedName: String) -> (parts: [TensorSpec], fused: TensorSpec) {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.shape.dropFirst() == parts[0].shape.dropFirst() },
                     "contiguous tensors must agree in all but their first dimension")
        var specs: [TensorSpec] = []
        var offset = (count + 15) / 16 * 16
        let start = offset
        for part in parts {
            specs.append(append(part.name, shape: part.shape, decays: decays, offset: offset))
            offset = count
        }
        let rows = parts.reduce(0) { $0 + $1.shape[0] }
        return (specs, TensorSpec(name: fusedName, shape: [rows] + parts[0].shape.dropFirst(), offset: start, decays: decays))
    }

    private mutating func append(_ name: String, shape: [Int], decays: Bool, offset: Int) -> TensorSpec {
        precondition(indexByName[name] == nil, "duplicate tensor \(name)")
        let spec = TensorSpec(name: name, shape: shape, offset: offset, decays: decays)
        tensors.append(spec)
        indexByName[name] = tensors.count - 1
        count = offset + spec.count
        return spec
    }

    /// A layout of some of these tensors at their offsets in the original buffer (for writing a subset).
    public func subset(_ include: (String) -> Bool) -> ParameterLayout {
        var out = ParameterLayout()
        for s in tensors where include(s.name) {
            out.tensors.append(s)
            out.indexByName[s.name] = out.tensors.count - 1
            out.count = max(out.count, s.offset + s.count)
        }
        return out
    }

    public func spec(_ name: String) -> TensorSpec? { indexByName[name].map { tensors[$0] } }

    public subscript(name: String) -> TensorSpec {
        guard let s = spec(name) else { preconditionFailure("no tensor \(name)") }
        return s
    }
}
