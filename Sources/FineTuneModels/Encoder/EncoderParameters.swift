import FineTuneKernels

/// The parameters of a BERT-architecture encoder body: named views into one flat buffer, with the
/// family's transformers tensor names (BertModel: `embeddings.word_embeddings.weight`,
/// `encoder.layer.{l}.attention.self.query.weight`, ...; MPNetModel: `encoder.layer.{l}.attention.attn.q.weight`,
/// ..., `encoder.relative_attention_bias.weight`; DistilBertModel: `transformer.layer.{l}.attention.q_lin.weight`,
/// ...), then LoRA's adapters. The task head's tensors
/// follow in the same layout (TaskHeads.swift). Shapes: V vocabulary, P positions, TV token types,
/// C hidden, F intermediate, NH heads, RB relative-position buckets.
public struct EncoderParameters: Sendable {
    public struct Layer: Sendable {
        /// [C, C], [C] each: the query, key and value projections.
        public let queryWeight: TensorSpec, queryBias: TensorSpec
        public let keyWeight: TensorSpec, keyBias: TensorSpec
        public let valueWeight: TensorSpec, valueBias: TensorSpec
        /// The three projections in the order their products run (Q, K, V).
        public var projections: [(weight: TensorSpec, bias: TensorSpec)] { [(queryWeight, queryBias), (keyWeight, keyBias), (valueWeight, valueBias)] }
        /// [C, C], [C]: the attention output projection.
        public let attentionOutputWeight: TensorSpec, attentionOutputBias: TensorSpec
        /// [C], [C]: LayerNorm after the attention sublayer.
        public let attentionNormWeight: TensorSpec, attentionNormBias: TensorSpec
        /// [F, C], [F]: the feed-forward expansion.
        public let intermediateWeight: TensorSpec, intermediateBias: TensorSpec
        /// [C, F], [C]: the feed-forward projection back.
        public let outputWeight: TensorSpec, outputBias: TensorSpec
        /// [C], [C]: LayerNorm after the feed-forward sublayer.
        public let outputNormWeight: TensorSpec, outputNormBias: TensorSpec
    }

    /// [V, C], [P, C], [TV, C] (nil: the family has no token types)
    public let wordEmbeddings: TensorSpec, positionEmbeddings: TensorSpec, tokenTypeEmbeddings: TensorSpec?
    /// [C], [C]
    public let embeddingNormWeight: TensorSpec, embeddingNormBias: TensorSpec
    /// [RB, NH]: MPNet's relative position bias, shared by every layer (in the embeddings' group:
    /// it lies below layer 0, so freezing the embeddings freezes it).
    public let relativeAttentionBias: TensorSpec?
    public let layers: [Layer]
    /// LoRA's A [r, in] and B [out, r] of one adapted linear layer.
    public struct Adapter: Sendable { public let a: TensorSpec, b: TensorSpec }
    /// Per layer, the adapters of its target layers (empty without LoRA). Laid out after the
    /// encoder, so the trainable adapters and the head are one suffix of the buffer.
    public let adapters: [[LoRATarget: Adapter]]

    /// Adds the body's tensors to `layout` (empty: the body comes first).
    public init(config: EncoderConfig, lora: LoRASettings? = nil, layout: inout ParameterLayout) {
        let C = config.hiddenSize, F = config.intermediateSize
        func add(_ name: String, _ shape: [Int]) -> TensorSpec { layout.addDecaying(name, shape) }
        wordEmbeddings = add("embeddings.word_embeddings.weight", [config.vocabSize, C])
        positionEmbeddings = add("embeddings.position_embeddings.weight", [config.maxPositions, C])
        tokenTypeEmbeddings = config.family.hasTokenTypes ? add("embeddings.token_type_embeddings.weight", [config.typeVocabSize, C]) : nil
        embeddingNormWeight = add("embeddings.LayerNorm.weight", [C])
        embeddingNormBias = add("embeddings.LayerNorm.bias", [C])
        relativeAttentionBias = config.relativeAttention.map { add("encoder.relative_attention_bias.weight", [$0.buckets, config.heads]) }
        let m = config.family.layerModules
        layers = (0..<config.layers).map { l in
            let p = config.family.layerPrefix(l)
            func linear(_ module: String, _ outputs: Int, _ inputs: Int) -> (TensorSpec, TensorSpec) {
                (add(p + module + ".weight", [outputs, inputs]), add(p + module + ".bias", [outputs]))
            }
            func norm(_ module: String) -> (TensorSpec, TensorSpec) { (add(p + module + ".weight", [C]), add(p + module + ".bias", [C])) }
            let q = linear(m.query, C, C), k = linear(m.key, C, C), v = linear(m.value, C, C), o = linear(m.attentionOutput, C, C)
            let norm1 = norm(m.attentionNorm), up = linear(m.intermediate, F, C), down = linear(m.output, C, F), norm2 = norm(m.outputNorm)
            return Layer(queryWeight: q.0, queryBias: q.1, keyWeight: k.0, keyBias: k.1, valueWeight: v.0, valueBias: v.1,
                         attentionOutputWeight: o.0, attentionOutputBias: o.1, attentionNormWeight: norm1.0, attentionNormBias: norm1.1,
                         intermediateWeight: up.0, intermediateBias: up.1, outputWeight: down.0, outputBias: down.1,
                         outputNormWeight: norm2.0, outputNormBias: norm2.1)
        }
        adapters = (0..<config.layers).map { l in
            guard let lora else { return [:] }
            var adapters: [LoRATarget: Adapter] = [:]
            for target in lora.targets {
                let (inputs, outputs) = target == .intermediate ? (C, F) : target == .output ? (F, C) : (C, C)
                let p = config.family.layerPrefix(l) + target.modulePath(in: config.family)
                adapters[target] = Adapter(a: add(p + ".lora_A.weight", [lora.rank, inputs]), b: add(p + ".lora_B.weight", [outputs, lora.rank]))
            }
            return adapters
        }
    }
}
