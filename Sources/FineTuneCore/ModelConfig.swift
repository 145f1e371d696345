import Foundation

/// What the model predicts.
public enum TaskKind: Equatable, Sendable {
    /// Single-label classification over the named classes (index = class id).
    case classification(labels: [String])
    /// Regression of one number.
    case regression

    public var outputCount: Int {
        switch self {
        case .classification(let labels): return labels.count
        case .regression: return 1
        }
    }
    public var labels: [String]? {
        if case .classification(let l) = self { return l }
        return nil
    }
}

public enum Activation: String, Sendable, CaseIterable {
    case relu, gelu
}

/// config.json of an MLP model folder. Field names follow Hugging Face conventions
/// (`model_type`, `hidden_act`, `id2label`, `label2id`, `problem_type`).
public struct MLPConfig: Equatable, Sendable {
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

    public static let supportedModelTypes = ["mlp"]

    /// Parses config.json; `path` only names the file in errors.
    public init(json data: Data, path: String) throws {
        func fail(_ why: String) -> FineTuneError { FineTuneError("\(path): \(why)") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        guard let modelType = object["model_type"] as? String else { throw fail("missing \"model_type\"") }
        guard modelType == "mlp" else {
            throw fail("model_type \"\(modelType)\" is not supported; supported: \(MLPConfig.supportedModelTypes.joined(separator: ", "))")
        }
        func int(_ key: String) throws -> Int {
            guard let n = object[key] as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue > 0 else {
                throw fail("\"\(key)\" must be a positive integer")
            }
            return n.intValue
        }
        inputSize = try int("input_size")
        guard let hidden = object["hidden_sizes"] as? [Any],
              let sizes = Optional(hidden.compactMap { ($0 as? NSNumber)?.intValue }), sizes.count == hidden.count,
              sizes.allSatisfy({ $0 > 0 }) else {
            throw fail("\"hidden_sizes\" must be a list of positive integers (it may be empty)")
        }
        hiddenSizes = sizes
        let actName = (object["hidden_act"] as? String) ?? "relu"
        guard let act = Activation(rawValue: actName) else {
            throw fail("\"hidden_act\" \"\(actName)\" is not supported; supported: relu, gelu")
        }
        activation = act
        dropout = (object["hidden_dropout_prob"] as? NSNumber)?.doubleValue ?? 0
        guard dropout >= 0 && dropout < 1 else { throw fail("\"hidden_dropout_prob\" must be in [0, 1)") }
        if (object["problem_type"] as? String) == "regression" {
            task = .regression
        } else {
            guard let id2label = object["id2label"] as? [String: Any], !id2label.isEmpty else {
                throw fail("a classifier needs \"id2label\" (or set \"problem_type\": \"regression\")")
            }
            var labels = [String](repeating: "", count: id2label.count)
            for (key, value) in id2label {
                guard let id = Int(key), id >= 0, id < labels.count, let name = value as? String else {
                    throw fail("\"id2label\" must map the ids 0..<\(labels.count) to label names; bad entry \"\(key)\"")
                }
                labels[id] = name
            }
            guard Set(labels).count == labels.count else { throw fail("\"id2label\" has duplicate label names") }
            task = .classification(labels: labels)
        }
    }

    public func jsonData() -> Data {
        var object: [String: Any] = [
            "model_type": "mlp",
            "architectures": ["MLP"],
            "input_size": inputSize,
            "hidden_sizes": hiddenSizes,
            "hidden_act": activation.rawValue,
            "hidden_dropout_prob": dropout,
            "num_labels": task.outputCount,
        ]
        switch task {
        case .classification(let labels):
            object["problem_type"] = "single_label_classification"
            object["id2label"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0.offset), $0.element) })
            object["label2id"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, $0.offset) })
        case .regression:
            object["problem_type"] = "regression"
        }
        return try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
