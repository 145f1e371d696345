import FineTuneKernels

/// The linear layers of a BERT layer LoRA can adapt, named as PEFT's `target_modules` name them.
public enum LoRATarget: String, CaseIterable, Sendable, Codable, Comparable {
    case query, key, value
    case attentionOutput = "attention.output.dense"
    case intermediate = "intermediate.dense"
    case output = "output.dense"

    /// The module path inside a layer (`family.layerPrefix(l)` + this) in `family`'s names.
    public func modulePath(in family: EncoderFamily) -> String {
        let m = family.layerModules
        switch self {
        case .query: return m.query
        case .key: return m.key
        case .value: return m.value
        case .attentionOutput: return m.attentionOutput
        case .intermediate: return m.intermediate
        case .output: return m.output
        }
    }
    public static func < (a: LoRATarget, b: LoRATarget) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }

    /// Parses "query,key,value,..." or "all" (every linear layer of a BERT layer, PEFT's
    /// "all-linear" minus the head, which trains anyway); an unknown name is an error listing the known ones.
    public static func parse(_ text: String) throws -> [LoRATarget] {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if names == ["all"] || names == ["all-linear"] { return allCases }
        let targets = try names.map { name -> LoRATarget in
            guard let t = LoRATarget(rawValue: name) else {
                throw FineTuneError("--lora-targets: \"\(name)\" names no layer; known: \(allCases.map(\.rawValue).joined(separator: ", ")), or all")
            }
            return t
        }
        guard !targets.isEmpty else { throw FineTuneError("--lora-targets: name at least one layer") }
        return Array(Set(targets)).sorted()
    }
}

/// LoRA on a BERT encoder (PEFT's LoraConfig): every target linear layer of every encoder layer gets
/// A [r, in] and B [out, r]; the base weights are frozen and scale = alpha / r.
public struct LoRASettings: Equatable, Sendable, Codable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var targets: [LoRATarget]
    public init(rank: Int, alpha: Double, dropout: Double, targets: [LoRATarget]) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.targets = targets
    }
    public var scale: Double { alpha / Double(rank) }
    enum CodingKeys: String, CodingKey { case rank = "r", alpha = "lora_alpha", dropout = "lora_dropout", targets = "target_modules" }
}

/// PEFT's initialisation of fresh adapters, in the order given: A ~ U(−1/√in, 1/√in)
/// (kaiming_uniform with a = √5), B = 0. Encoders and decoders draw the same way from `seed`.
func initializeLoRAAdapters(_ adapters: [(a: TensorSpec, b: TensorSpec)], parameters: FlatBuffer<Float>, seed: UInt64) {
    var rng = SplitMix64(seed: combineKey(seed, 0x10BA))
    for (a, b) in adapters {
        let bound = 1 / Double(a.shape[1]).squareRoot()
        for i in 0..<a.count { parameters[a.offset + i] = Float((rng.nextUnit() * 2 - 1) * bound) }
        parameters.at(b).update(repeating: 0, count: b.count)
    }
}

/// The backward of one adapted linear layer's LoRA branch (after `loraForward` on `input`, the
/// layer input after LoRA's dropout when it is on): the adapters' gradients into da and db, and
/// dinp += the input's share, taken back through the dropout mask (nil dinp: not needed).
/// dh [B, R] and scratch [B, C] are scratch.
func loraBranchBackward(dinp: UnsafeMutablePointer<Float>?, da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>,
                        dh: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, h: UnsafePointer<Float>,
                        input: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, scale: Float,
                        dropout: Double, mask: UnsafePointer<UInt8>, B: Int, C: Int, OC: Int, R: Int) {
    let dropped = dropout > 0
    loraBackward(dinp: dropped && dinp != nil ? scratch : dinp, da: da, db: db, dh: dh, dout: dout, h: h, inp: input, a: a, b: b, scale: scale,
                 B: B, C: C, OC: OC, R: R, overwritingInput: dropped)
    if dropped, let dinp {
        dropoutGradient(dinp: scratch, dout: scratch, mask: mask, probability: dropout, N: B * C)
        residualForward(out: dinp, a: dinp, b: scratch, N: B * C)
    }
}
