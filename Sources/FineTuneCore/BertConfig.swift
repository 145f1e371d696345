import Foundation

public enum Pooling: String, Sendable, CaseIterable {
    /// Masked mean over the tokens (sentence-transformers' default); exported as a sentence-transformers folder.
    case mean
    /// Hugging Face's pooler: dense + tanh on [CLS]; exported as BertForSequenceClassification.
    case cls
}

/// config.json of a BERT-family encoder (BertModel, BertForSequenceClassification, MiniLM, ...).
/// Field names are transformers'; fields this program does not use are kept and written back.
public struct BertConfig {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var layerNormEps: Double
    /// "gelu" (erf form) or "gelu_new" (tanh form).
    public var hiddenAct: String
    public var hiddenDropout: Double
    public var attentionDropout: Double
    /// Dropout before the classifier (transformers' `classifier_dropout`, else hidden_dropout_prob).
    public var classifierDropout: Double
    /// Every field of the file, for writing it back.
    public var raw: [String: Any]

    public static let supportedModelTypes = ["bert", "mlp"]
    public static let supportedActivations = ["gelu", "gelu_new", "gelu_pytorch_tanh"]

    public init(json object: [String: Any], path: String) throws {
        func fail(_ why: String) -> FineTuneError { FineTuneError("\(path): \(why)") }
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            if let n = object[key] as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue > 0 { return n.intValue }
            if object[key] == nil, let value { return value }
            throw fail("\"\(key)\" must be a positive integer")
        }
        func probability(_ key: String, default value: Double) throws -> Double {
            guard let v = object[key] else { return value }
            if v is NSNull { return value }
            guard let n = v as? NSNumber, n.doubleValue >= 0, n.doubleValue < 1 else { throw fail("\"\(key)\" must be in [0, 1)") }
            return n.doubleValue
        }
        vocabSize = try int("vocab_size")
        hiddenSize = try int("hidden_size")
        layers = try int("num_hidden_layers")
        heads = try int("num_attention_heads")
        intermediateSize = try int("intermediate_size")
        maxPositions = try int("max_position_embeddings", default: 512)
        typeVocabSize = try int("type_vocab_size", default: 2)
        guard hiddenSize % heads == 0 else { throw fail("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(heads)") }
        layerNormEps = (object["layer_norm_eps"] as? NSNumber)?.doubleValue ?? 1e-12
        hiddenAct = (object["hidden_act"] as? String) ?? "gelu"
        guard BertConfig.supportedActivations.contains(hiddenAct) else {
            throw fail("hidden_act \"\(hiddenAct)\" is not supported; supported: \(BertConfig.supportedActivations.joined(separator: ", "))")
        }
        if let kind = object["position_embedding_type"] as? String, kind != "absolute" {
            throw fail("position_embedding_type \"\(kind)\" is not supported (only absolute)")
        }
        hiddenDropout = try probability("hidden_dropout_prob", default: 0.1)
        attentionDropout = try probability("attention_probs_dropout_prob", default: 0.1)
        classifierDropout = try probability("classifier_dropout", default: hiddenDropout)
        raw = object
    }

    public var headSize: Int { hiddenSize / heads }
    public var usesTanhGELU: Bool { hiddenAct != "gelu" }

    /// The labels of the head described by the config (id2label), if any.
    public static func labels(in object: [String: Any], path: String) throws -> [String]? {
        guard let id2label = object["id2label"] as? [String: Any], !id2label.isEmpty else { return nil }
        var labels = [String](repeating: "", count: id2label.count)
        for (key, value) in id2label {
            guard let id = Int(key), id >= 0, id < labels.count, let name = value as? String else {
                throw FineTuneError("\(path): \"id2label\" must map the ids 0..<\(labels.count) to label names; bad entry \"\(key)\"")
            }
            labels[id] = name
        }
        return labels
    }
}
