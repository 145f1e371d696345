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
        let offset = (count + 15) / 16 * 16
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
