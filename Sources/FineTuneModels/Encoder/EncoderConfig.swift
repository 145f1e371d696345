import FineTuneJSON
import FineTuneKernels
import Foundation

public enum Pooling: String, Sendable, CaseIterable, Codable {
    /// Masked mean over the tokens (sentence-transformers' default); exported as a sentence-transformers folder.
    case mean
    /// Hugging Face's pooler: dense + tanh on [CLS]; exported as BertForSequenceClassification.
    case cls
}

/// config.json of a BERT-architecture encoder (BERT, MiniLM, MPNet, RoBERTa, DistilBERT:
/// `EncoderFamily`), with transformers' field names. Fields this program does not use stay in `raw` and are written back.
public struct EncoderConfig: Decodable, Sendable {
    /// From model_type.
    public var family: EncoderFamily
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    /// Rows of the token-type table (0: the family has none).
    public var typeVocabSize: Int
    /// The position-embedding row of a sequence's first token: 0 for BERT and DistilBERT,
    /// padding_idx + 1 for MPNet and RoBERTa.
    public var positionOffset: Int
    /// MPNet's relative position bias: its buckets (relative_attention_num_buckets) and the
    /// distance the last bucket starts at (128 in transformers, not configurable there); nil for BERT.
    public var relativeAttention: (buckets: Int, maxDistance: Int)?
    public var layerNormEps: Double
    /// "gelu" (erf form) or "gelu_new" / "gelu_pytorch_tanh" (tanh form); DistilBERT's `activation`.
    public var hiddenAct: String
    public var hiddenDropout: Double
    public var attentionDropout: Double
    /// Dropout before the classifier (transformers' `classifier_dropout`, else hidden_dropout_prob;
    /// DistilBERT's `seq_classif_dropout`).
    public var classifierDropout: Double
    /// Standard deviation of a fresh head's weights.
    public var initializerRange: Double
    /// The head described by the config (`id2label`), if any.
    public var labels: [String]?
    public var problemType: String?
    /// Every field of the file, for writing it back.
    public var raw: [String: JSONValue] = [:]

    public static let supportedActivations = ["gelu", "gelu_new", "gelu_pytorch_tanh"]

    /// A config field by name. DistilBERT names its fields differently (dim, n_layers, ...): `key`
    /// picks the family's name.
    typealias Field = ConfigField

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Field.self)
        let modelType = try c.string(Field("model_type"), default: "bert")
        guard let family = EncoderFamily(rawValue: modelType) else {
            throw FineTuneError("model_type \"\(modelType)\" is not an encoder family this program reads (\(EncoderFamily.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.family = family
        let distil = family == .distilbert
        func key(_ name: String, distilbert: String) -> Field { Field(distil ? distilbert : name) }
        vocabSize = try c.positiveInteger(Field("vocab_size"))
        hiddenSize = try c.positiveInteger(key("hidden_size", distilbert: "dim"))
        layers = try c.positiveInteger(key("num_hidden_layers", distilbert: "n_layers"))
        heads = try c.positiveInteger(key("num_attention_heads", distilbert: "n_heads"))
        intermediateSize = try c.positiveInteger(key("intermediate_size", distilbert: "hidden_dim"))
        maxPositions = try c.positiveInteger(Field("max_position_embeddings"), default: 512)
        typeVocabSize = family.hasTokenTypes ? try c.positiveInteger(Field("type_vocab_size"), default: family == .roberta ? 1 : 2) : 0
        positionOffset = family.positionsAfterPadding ? try c.nonNegativeInteger(Field("pad_token_id"), default: 1) + 1 : 0
        relativeAttention = family == .mpnet ? (try c.positiveInteger(Field("relative_attention_num_buckets"), default: 32), 128) : nil
        guard positionOffset < maxPositions else {
            throw FineTuneError("pad_token_id \(positionOffset - 1) leaves no position embeddings (max_position_embeddings \(maxPositions))")
        }
        guard hiddenSize % heads == 0 else {
            throw FineTuneError("\(key("hidden_size", distilbert: "dim").stringValue) \(hiddenSize) is not a multiple of \(key("num_attention_heads", distilbert: "n_heads").stringValue) \(heads)")
        }
        // DistilBERT's LayerNorms all use 1e-12 (its config has no field for it).
        layerNormEps = distil ? 1e-12 : try c.number(Field("layer_norm_eps"), default: family == .mpnet ? 1e-5 : 1e-12)
        let activationField = key("hidden_act", distilbert: "activation")
        hiddenAct = try c.string(activationField, default: "gelu")
        guard EncoderConfig.supportedActivations.contains(hiddenAct) else {
            throw FineTuneError("\(activationField.stringValue) \"\(hiddenAct)\" is not supported; supported: \(EncoderConfig.supportedActivations.joined(separator: ", "))")
        }
        let positions = try c.string(Field("position_embedding_type"), default: "absolute")
        guard positions == "absolute" else { throw FineTuneError("position_embedding_type \"\(positions)\" is not supported (only absolute)") }
        if distil, case .bool(true)? = try? c.decodeIfPresent(JSONValue.self, forKey: Field("sinusoidal_pos_embds")) {
            throw FineTuneError("sinusoidal_pos_embds true is not supported (fixed sinusoidal positions; only learned ones)")
        }
        hiddenDropout = try c.probability(key("hidden_dropout_prob", distilbert: "dropout"), default: 0.1)
        attentionDropout = try c.probability(key("attention_probs_dropout_prob", distilbert: "attention_dropout"), default: 0.1)
        classifierDropout = try c.probability(key("classifier_dropout", distilbert: "seq_classif_dropout"), default: distil ? 0.2 : hiddenDropout)
        initializerRange = try c.number(Field("initializer_range"), default: 0.02)
        labels = try c.labels(Field("id2label"))
        problemType = try? c.string(Field("problem_type"), default: "")
        if problemType == "" { problemType = nil }
    }

    /// Reads config.json; errors name `path` and the field.
    public static func decode(_ data: Data, path: String) throws -> EncoderConfig {
        var (config, raw) = try decodeConfig(EncoderConfig.self, from: data, path: path)
        config.raw = raw
        return config
    }

    public var headSize: Int { hiddenSize / heads }
    /// The longest input the position embeddings allow.
    public var maxSequenceLength: Int { maxPositions - positionOffset }
    public var usesTanhGELU: Bool { hiddenAct != "gelu" }

    /// The config as written back: every field of the original file, the head of `task` as
    /// transformers describes it (id2label, label2id, problem_type), and `extra` fields on top.
    public func object(task: TaskKind?, extra: [String: JSONValue] = [:]) -> [String: JSONValue] {
        var o = raw
        switch task {
        case .classification(let labels)?:
            o["id2label"] = .object(id2label(labels).mapValues { .string($0) })
            o["label2id"] = .object(label2id(labels).mapValues { .integer(Int64($0)) })
            o["problem_type"] = .string("single_label_classification")
        case .regression?:
            o["id2label"] = .object(["0": .string("LABEL_0")])
            o["label2id"] = .object(["LABEL_0": .integer(0)])
            o["problem_type"] = .string("regression")
        case .maskedLanguageModel?, .embedding?, .causalLanguageModel?, nil:
            // A masked-LM or embedding model keeps the folder's labels, if any: they belong to the
            // encoder's next fine-tune, not to this head.
            break
        }
        o.merge(extra) { _, new in new }
        return o
    }
}
