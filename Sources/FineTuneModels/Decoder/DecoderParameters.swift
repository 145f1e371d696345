import FineTuneKernels

/// The linear layers of a Llama layer, named as transformers and PEFT's `target_modules` name them.
public enum DecoderProjection: String, CaseIterable, Sendable, Codable, Comparable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// The module path inside `model.layers.{l}.`.
    public var modulePath: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn." + rawValue
        case .gate, .up, .down: return "mlp." + rawValue
        }
    }
    /// (outputs, inputs) of the layer's weight.
    func shape(_ config: DecoderConfig) -> (outputs: Int, inputs: Int) {
        let C = config.hiddenSize, F = config.intermediateSize
        switch self {
        case .q: return (config.queryWidth, C)
        case .k, .v: return (config.keyValueWidth, C)
        case .o: return (C, config.queryWidth)
        case .gate, .up: return (F, C)
        case .down: return (C, F)
        }
    }
    public static func < (a: DecoderProjection, b: DecoderProjection) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }

    /// Parses "q_proj,v_proj,..." (also "q,v"), or "all" / "all-linear" (every projection).
    public static func parse(_ text: String) throws -> [DecoderProjection] {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if names == ["all"] || names == ["all-linear"] { return allCases }
        let targets = try names.map { name -> DecoderProjection in
            guard let t = DecoderProjection(rawValue: name) ?? DecoderProjection(rawValue: name + "_proj") else {
                throw FineTuneError("--lora-targets: \"\(name)\" names no layer of a decoder; known: \(allCases.map(\.rawValue).joined(separator: ", ")), or all")
            }
            return t
        }
        guard !targets.isEmpty else { throw FineTuneError("--lora-targets: name at least one layer") }
        return Array(Set(targets)).sorted()
    }
}

/// LoRA on a decoder (PEFT's LoraConfig over the named projections): A [r, in], B [out, r] per
/// target of every layer, scale = alpha / r, the base model frozen.
public struct DecoderLoRA: Equatable, Sendable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var targets: [DecoderProjection]
    public init(rank: Int, alpha: Double, dropout: Double, targets: [DecoderProjection]) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.targets = targets
    }
    public var scale: Double { alpha / Double(rank) }
}

/// The parameters of a Llama-architecture causal LM: named views into one flat buffer with
/// transformers' names (`model.embed_tokens.weight`, `model.layers.{l}.self_attn.q_proj.weight`,
/// ..., `model.norm.weight`, `lm_head.weight` when untied), then LoRA's adapters. Groups from the
/// input up: embeddings, layers, the head (final norm and untied lm_head), adapters.
/// Shapes: V vocabulary, C hidden, F MLP width, NH·HS query width, NKV·HS key/value width.
public struct DecoderParameters: Sendable {
    public struct Layer: Sendable {
        /// [C] each: RMSNorm before attention and before the MLP.
        public let inputNorm: TensorSpec, postAttentionNorm: TensorSpec
        /// The seven projections' weights [out, in], and biases where the config has them.
        public let weights: [DecoderProjection: TensorSpec]
        public let biases: [DecoderProjection: TensorSpec]
    }
    /// [V, C]
    public let embeddings: TensorSpec
    public let layers: [Layer]
    /// [C]: the final RMSNorm.
    public let finalNorm: TensorSpec
    /// [V, C]: nil when tied to `embeddings`.
    public let lmHead: TensorSpec?
    public struct Adapter: Sendable { public let a: TensorSpec, b: TensorSpec }
    /// Per layer, the adapters of the LoRA targets (empty without LoRA).
    public let adapters: [[DecoderProjection: Adapter]]

    public static func layerPrefix(_ l: Int) -> String { "model.layers.\(l)." }

    public init(config: DecoderConfig, lora: DecoderLoRA?, layout: inout ParameterLayout) {
        let C = config.hiddenSize
        // No weight decay on norms and biases (transformers' Trainer's rule).
        embeddings = layout.add("model.embed_tokens.weight", shape: [config.vocabSize, C], decays: true)
        layers = (0..<config.layers).map { l in
            let p = Self.layerPrefix(l)
            let inputNorm = layout.add(p + "input_layernorm.weight", shape: [C], decays: false)
            var weights: [DecoderProjection: TensorSpec] = [:], biases: [DecoderProjection: TensorSpec] = [:]
            for projection in [DecoderProjection.q, .k, .v, .o] {
                let (outputs, inputs) = projection.shape(config)
                weights[projection] = layout.add(p + projection.modulePath + ".weight", shape: [outputs, inputs], decays: true)
                if projection == .o ? config.outputBias : config.qkvBias {
                    biases[projection] = layout.add(p + projection.modulePath + ".bias", shape: [outputs], decays: false)
                }
            }
            let postAttentionNorm = layout.add(p + "post_attention_layernorm.weight", shape: [C], decays: false)
            for projection in [DecoderProjection.gate, .up, .down] {
                let (outputs, inputs) = projection.shape(config)
                weights[projection] = layout.add(p + projection.modulePath + ".weight", shape: [outputs, inputs], decays: true)
            }
            return Layer(inputNorm: inputNorm, postAttentionNorm: postAttentionNorm, weights: weights, biases: biases)
        }
        finalNorm = layout.add("model.norm.weight", shape: [C], decays: false)
        lmHead = config.tiedEmbeddings ? nil : layout.add("lm_head.weight", shape: [config.vocabSize, C], decays: true)
        adapters = (0..<config.layers).map { l in
            guard let lora else { return [:] }
            var adapters: [DecoderProjection: Adapter] = [:]
            for target in lora.targets {
                let (outputs, inputs) = target.shape(config)
                let p = Self.layerPrefix(l) + target.modulePath
                adapters[target] = Adapter(a: layout.add(p + ".lora_A.weight", shape: [lora.rank, inputs], decays: true),
                                           b: layout.add(p + ".lora_B.weight", shape: [outputs, lora.rank], decays: true))
            }
            return adapters
        }
    }

    /// The matrix the logits multiply: lm_head, or the tied embeddings.
    public var outputEmbeddings: TensorSpec { lmHead ?? embeddings }
}
