import FineTuneKernels

/// A model's parameters in the order a signal meets them, from the input up: the input side
/// (embeddings), the layers, the head. Each group is a contiguous range of the flat buffer, in
/// ascending offsets, so "freeze everything below group g" is a prefix of the buffer and the
/// trainable parameters are one suffix: what the optimizer, the gradient exchange and the
/// checkpoints hold.
public struct ParameterGroup: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case embeddings
        /// Layer l, counted from the input (BERT's encoder.layer.{l}, an MLP's hidden layer l).
        case layer(Int)
        /// LoRA's adapters of every layer (their base weights frozen).
        case adapters
        /// The pooling head and classifier: always trained.
        case head
    }
    public let kind: Kind
    public let range: Range<Int>
    public init(kind: Kind, range: Range<Int>) { self.kind = kind; self.range = range }

    /// Groups of a layout from the first tensor of each group (ascending offsets); the last runs to the end.
    static func split(_ layout: ParameterLayout, starts: [(Kind, TensorSpec)]) -> [ParameterGroup] {
        starts.enumerated().map { i, start in
            let end = i + 1 < starts.count ? starts[i + 1].1.offset : layout.count
            return ParameterGroup(kind: start.0, range: start.1.offset..<end)
        }
    }
}

/// Which parameters train: the user's choice, resolved against a model's groups.
public struct FreezeSettings: Equatable, Sendable, Codable {
    /// Freeze the embeddings (word, position, token type and their LayerNorm).
    public var embeddings = false
    /// Freeze the lowest N layers, and the embeddings below them.
    public var layers = 0
    /// Train only the head (pooler and classifier).
    public var onlyHead = false
    /// Gradual unfreezing (ULMFiT): start with the head and add one group from the top every this many epochs.
    public var unfreezeEvery: Int? = nil
    public init() {}

    public var isDefault: Bool { self == FreezeSettings() }

    /// The offset below which parameters are frozen in epoch `epoch` (0: everything trains).
    public func trainableFrom(_ groups: [ParameterGroup], epoch: Int) throws -> Int {
        let layerCount = groups.filter { if case .layer = $0.kind { return true } else { return false } }.count
        let hasEmbeddings = groups.contains { $0.kind == .embeddings }
        if embeddings && !hasEmbeddings { throw FineTuneError("--freeze embeddings: this model has no embeddings (an MLP); use --freeze-layers") }
        if layers > layerCount {
            throw FineTuneError("--freeze-layers \(layers): the model has \(layerCount) layers (use --train-only head to freeze all of them)")
        }
        guard let head = groups.firstIndex(where: { $0.kind == .head }) else { return 0 }
        // LoRA: the adapters and the head train, everything below them is frozen.
        if let adapters = groups.firstIndex(where: { $0.kind == .adapters }) {
            guard isDefault else { throw FineTuneError("LoRA trains only the adapters and the head; --freeze, --freeze-layers, --train-only and --unfreeze-every do not combine with it") }
            return groups[adapters].range.lowerBound
        }
        // The lowest group that trains, by the static settings.
        var lowest = 0
        if onlyHead { lowest = head }
        if layers > 0 { lowest = max(lowest, groups.firstIndex { $0.kind == .layer(layers - 1) }! + 1) }
        if embeddings, let e = groups.firstIndex(where: { $0.kind == .embeddings }) { lowest = max(lowest, e + 1) }
        // Gradual unfreezing: the head alone, then one more group from the top each interval.
        if let every = unfreezeEvery { lowest = max(lowest, head - epoch / every) }
        return groups[min(lowest, head)].range.lowerBound
    }

    /// The settings as options, for training_config.json and the resume check.
    public var description: String {
        var parts: [String] = []
        if embeddings { parts.append("embeddings") }
        if layers > 0 { parts.append("layers<\(layers)") }
        if onlyHead { parts.append("all but head") }
        if let unfreezeEvery { parts.append("unfreeze every \(unfreezeEvery)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}
