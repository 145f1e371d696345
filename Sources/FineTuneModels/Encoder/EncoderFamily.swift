/// The encoder families this program reads. All are BERT's post-LayerNorm transformer; they differ
/// in their embeddings (token types, where positions start), MPNet's relative position bias, the
/// names transformers gives their tensors, and their task heads:
///
/// | family | token types | positions from | score bias | cls head | masked-LM head |
/// |---|---|---|---|---|---|
/// | bert (MiniLM, ...) | yes | 0 | none | pooler.dense + tanh, classifier | cls.predictions.* |
/// | mpnet | no | padding_idx + 1 | relative (shared by all layers) | classifier.dense + tanh, classifier.out_proj | lm_head.* |
///
/// Every name below is transformers' (MPNetModel, MPNetForSequenceClassification, ...): they are
/// this program's parameter names too, so checkpoints, exports and `inspect` say what transformers says.
public enum EncoderFamily: String, Sendable, CaseIterable, Codable {
    case bert, mpnet

    /// transformers' attribute of the encoder inside ...ForSequenceClassification / ...ForMaskedLM.
    public var basePrefix: String { rawValue + "." }
    /// The architecture names written to an exported config.json.
    public var baseArchitecture: String { self == .bert ? "BertModel" : "MPNetModel" }
    public var sequenceClassificationArchitecture: String { self == .bert ? "BertForSequenceClassification" : "MPNetForSequenceClassification" }
    public var maskedLMArchitecture: String { self == .bert ? "BertForMaskedLM" : "MPNetForMaskedLM" }

    /// Whether the embeddings add a token-type row.
    public var hasTokenTypes: Bool { self == .bert }

    /// A layer's modules, as paths below `encoder.layer.{l}.`.
    public struct LayerModules: Sendable {
        public let query: String, key: String, value: String, attentionOutput: String, attentionNorm: String
        public let intermediate: String, output: String, outputNorm: String
    }
    public var layerModules: LayerModules {
        switch self {
        case .bert:
            return LayerModules(query: "attention.self.query", key: "attention.self.key", value: "attention.self.value",
                                attentionOutput: "attention.output.dense", attentionNorm: "attention.output.LayerNorm",
                                intermediate: "intermediate.dense", output: "output.dense", outputNorm: "output.LayerNorm")
        case .mpnet:
            return LayerModules(query: "attention.attn.q", key: "attention.attn.k", value: "attention.attn.v",
                                attentionOutput: "attention.attn.o", attentionNorm: "attention.LayerNorm",
                                intermediate: "intermediate.dense", output: "output.dense", outputNorm: "output.LayerNorm")
        }
    }

    /// The sequence head on cls pooling: the dense + tanh on the first token and the classifier.
    /// MPNet's head (MPNetClassificationHead) also drops out before its dense layer.
    public var clsHeadModules: (dense: String, classifier: String, dropoutBeforeDense: Bool) {
        self == .bert ? ("pooler.dense", "classifier", false) : ("classifier.dense", "classifier.out_proj", true)
    }

    /// The masked-LM head's modules: the transform's dense and LayerNorm, the decoder's bias.
    public var maskedLMModules: (dense: String, norm: String, bias: String) {
        self == .bert ? ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.bias")
                      : ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias")
    }

    /// Name prefixes of heads that sit at the top level of ...ForSequenceClassification and
    /// ...ForMaskedLM (outside the `basePrefix` encoder).
    public var topLevelPrefixes: [String] { self == .bert ? ["classifier.", "cls."] : ["classifier.", "lm_head."] }
    /// The pre-training head a base folder may hold, dropped when fine-tuning something else.
    public var pretrainingHeadPrefix: String { self == .bert ? "cls." : "lm_head." }
}
