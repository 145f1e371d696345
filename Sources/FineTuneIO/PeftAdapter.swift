import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) read as `--model`:
/// the model is its base (base_model_name_or_path) with these adapters, and the head saved with
/// them (modules_to_save) replacing the base's.
public struct PeftAdapter {
    public let path: String
    public let basePath: String
    public let lora: LoRASettings
    /// PEFT's task_type: SEQ_CLS (a BertForSequenceClassification: [CLS] pooling and its pooler) or
    /// FEATURE_EXTRACTION (a BertModel: mean pooling, as this program's sentence-transformers exports).
    public let taskType: String?
    let file: SafetensorsFile

    struct Config: Decodable {
        var peftType: String?, basePath: String?, r: Int, alpha: Double, dropout: Double?, targets: Targets?, taskType: String?
        enum CodingKeys: String, CodingKey {
            case peftType = "peft_type", basePath = "base_model_name_or_path", r, alpha = "lora_alpha", dropout = "lora_dropout"
            case targets = "target_modules", taskType = "task_type"
        }
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            peftType = try c.decodeIfPresent(String.self, forKey: .peftType)
            basePath = try c.decodeIfPresent(String.self, forKey: .basePath)
            r = try c.decode(Int.self, forKey: .r)
            alpha = try c.decode(Double.self, forKey: .alpha)
            dropout = try c.decodeIfPresent(Double.self, forKey: .dropout)
            targets = try c.decodeIfPresent(Targets.self, forKey: .targets)
            taskType = try c.decodeIfPresent(String.self, forKey: .taskType)
        }
    }
    /// PEFT's target_modules: names matched as suffixes, or one regular expression.
    enum Targets: Decodable {
        case names([String]), pattern(String)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let names = try? c.decode([String].self) { self = .names(names) } else { self = .pattern(try c.decode(String.self)) }
        }
    }

    /// The base model's family: its encoder's prefix in the adapter's tensor names.
    public let family: EncoderFamily

    /// Reads `folder`; nil when it holds no adapter_config.json. `family`: the base's, when known
    /// (target module names are matched in its names; unknown: in every family's).
    public static func read(_ folder: String, family: EncoderFamily? = nil) throws -> PeftAdapter? {
        let configPath = "\(folder)/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else { return nil }
        let (base, lora, taskType) = try parseConfig(data, path: configPath, family: family)
        // A local path, as PEFT takes it (from the working directory), else beside the adapter.
        let basePath = FileManager.default.fileExists(atPath: base) || base.hasPrefix("/") ? base : "\(folder)/\(base)"
        guard FileManager.default.fileExists(atPath: basePath) else {
            throw FineTuneError("\(configPath): base_model_name_or_path \"\(base)\" is not a folder here (hub names are not fetched)")
        }
        let weightsPath = "\(folder)/adapter_model.safetensors"
        guard let weights = FileManager.default.contents(atPath: weightsPath) else { throw FineTuneError("\(weightsPath): missing") }
        return PeftAdapter(path: folder, basePath: basePath, lora: lora, taskType: taskType, file: try SafetensorsFile(data: weights, path: weightsPath),
                           family: family ?? .bert)
    }

    /// The base model, the LoRA settings and the task type of an adapter_config.json.
    public static func parseConfig(_ data: Data, path configPath: String, family: EncoderFamily? = nil) throws -> (basePath: String, lora: LoRASettings, taskType: String?) {
        let families = family.map { [$0] } ?? EncoderFamily.allCases
        let paths = { (target: LoRATarget) in families.map { target.modulePath(in: $0) } }
        let (config, _) = try decodeConfig(Config.self, from: data, path: configPath)
        guard config.peftType == "LORA" else { throw FineTuneError("\(configPath): peft_type \(config.peftType ?? "missing"); only LORA adapters are read") }
        guard let base = config.basePath, !base.isEmpty else { throw FineTuneError("\(configPath): no base_model_name_or_path: which model does the adapter go on?") }
        let targets: [LoRATarget]
        switch config.targets {
        case .names(let names)?:
            // Suffix matching: "output.dense" also takes attention.output.dense.
            targets = try Array(Set(names.flatMap { name -> [LoRATarget] in
                let matched = LoRATarget.allCases.filter { paths($0).contains { $0 == name || $0.hasSuffix("." + name) } }
                guard !matched.isEmpty else { throw FineTuneError("\(configPath): target module \"\(name)\" is not an encoder layer's linear layer") }
                return matched
            })).sorted()
        case .pattern(let pattern)?:
            targets = LoRATarget.allCases.filter {
                paths($0).contains { path in
                    let escaped = path.replacingOccurrences(of: ".", with: "\\.")
                    return pattern.contains(escaped + "|") || pattern.contains(escaped + ")")
                }
            }
            guard !targets.isEmpty else { throw FineTuneError("\(configPath): target_modules pattern \"\(pattern)\" names no layer this program knows") }
        case nil:
            throw FineTuneError("\(configPath): no target_modules")
        }
        guard config.r > 0, config.alpha > 0 else { throw FineTuneError("\(configPath): r and lora_alpha must be positive") }
        return (base, LoRASettings(rank: config.r, alpha: config.alpha, dropout: config.dropout ?? 0, targets: targets), config.taskType)
    }

    /// The adapter's tensor for a parameter of our layout: "base_model.model.[bert.|mpnet.|...]" + its
    /// name (the head: classifier.*, pre_classifier.* directly under base_model.model).
    func entryName(for parameter: String) -> String? {
        let candidates = EncoderTensorNames.isTopLevel(parameter) ? ["base_model.model." + parameter]
            : ["base_model.model." + family.basePrefix + parameter, "base_model.model." + parameter]
        return candidates.first { file.entries[$0] != nil }
    }

    /// Reads the adapters, and the head when the adapter saved one, into `model`.
    func load(into model: BertModel) throws {
        for spec in model.layout.tensors {
            let isAdapter = spec.name.contains(".lora_"), isHead = EncoderTensorNames.isTopLevel(spec.name) || spec.name.hasPrefix("pooler.")
            guard isAdapter || isHead else { continue }
            guard let name = entryName(for: spec.name) else {
                if isAdapter { throw FineTuneError("\(file.path): missing the adapter tensor of \(spec.name)") }
                continue
            }
            let entry = file.entries[name]!
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(file.path): tensor \(name) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            try file.read(entry, into: model.parameters.at(spec))
        }
    }

    /// The pooling the adapter was trained with.
    public var pooling: Pooling { taskType == "SEQ_CLS" ? .cls : .mean }

    /// The label names of the model folder holding this adapter folder (finetune-dist's exports put
    /// it in best/adapter and final/adapter), when it has `count` of them.
    func labelsBeside(count: Int) -> [String]? {
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("config.json").path
        guard let data = FileManager.default.contents(atPath: parent),
              let id2label = (try? StrictJSON.parse(data))?.object?["id2label"]?.object, id2label.count == count else { return nil }
        let labels = (0..<count).compactMap { id2label[String($0)]?.string }
        return labels.count == count ? labels : nil
    }

    /// Outputs of the saved classifier (to build a head for a base folder that has none).
    var classifierOutputs: Int? {
        let classifier = family.clsHeadModules.classifier
        return (file.entries["base_model.model.\(classifier).weight"] ?? file.entries["base_model.model.classifier.weight"])?.shape.first
    }
}
