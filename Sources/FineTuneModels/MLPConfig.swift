import FineTuneKernels
import Foundation

public enum Activation: String, Sendable, CaseIterable, Codable {
    case relu, gelu
}

/// config.json of an MLP model folder. Field names follow Hugging Face conventions
/// (`model_type`, `hidden_act`, `id2label`, `label2id`, `problem_type`).
public struct MLPConfig: Codable, Equatable, Sendable {
    public var inputSize: Int
    public var hiddenSizes: [Int]
    public var activation: Activation
    public var dropout: Double
    public var task: TaskKind

    public init(inputSize: Int, hiddenSizes: [Int], activation: Activation, dropout: Double, task: TaskKind) {
        self.inputSize = inputSize
        self.hiddenSizes = hiddenSizes
        self.activation = activation
        self.dropout = dropout
        self.task = task
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", architectures, inputSize = "input_size", hiddenSizes = "hidden_sizes"
        case activation = "hidden_act", dropout = "hidden_dropout_prob", numLabels = "num_labels"
        case problemType = "problem_type", id2label, label2id
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let modelType = try c.string(.modelType, default: "")
        guard modelType == "mlp" else { throw FineTuneError("model_type \"\(modelType)\" is not an MLP") }
        inputSize = try c.positiveInteger(.inputSize)
        guard let sizes = try? c.decode([Double].self, forKey: .hiddenSizes),
              sizes.allSatisfy({ $0 > 0 && $0 == $0.rounded() && $0 < Double(Int32.max) }) else {
            throw FineTuneError("\"hidden_sizes\" must be a list of positive integers (it may be empty)")
        }
        hiddenSizes = sizes.map { Int($0) }
        let actName = try c.string(.activation, default: "relu")
        guard let act = Activation(rawValue: actName) else {
            throw FineTuneError("\"hidden_act\" \"\(actName)\" is not supported; supported: relu, gelu")
        }
        activation = act
        dropout = try c.probability(.dropout, default: 0)
        if try c.string(.problemType, default: "") == "regression" {
            task = .regression
        } else {
            guard let labels = try c.labels(.id2label) else {
                throw FineTuneError("a classifier needs \"id2label\" (or set \"problem_type\": \"regression\")")
            }
            task = .classification(labels: labels)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("mlp", forKey: .modelType)
        try c.encode(["MLP"], forKey: .architectures)
        try c.encode(inputSize, forKey: .inputSize)
        try c.encode(hiddenSizes, forKey: .hiddenSizes)
        try c.encode(activation, forKey: .activation)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(task.outputCount, forKey: .numLabels)
        switch task {
        case .classification(let labels):
            try c.encode("single_label_classification", forKey: .problemType)
            try c.encode(id2label(labels), forKey: .id2label)
            try c.encode(label2id(labels), forKey: .label2id)
        case .regression:
            try c.encode("regression", forKey: .problemType)
        case .maskedLanguageModel, .embedding, .causalLanguageModel:
            preconditionFailure("an MLP has no language-model or sentence-embedding head")
        }
    }

    /// Reads config.json; errors name `path` and the field.
    public static func decode(_ data: Data, path: String) throws -> MLPConfig {
        try decodeConfig(MLPConfig.self, from: data, path: path).0
    }
}
