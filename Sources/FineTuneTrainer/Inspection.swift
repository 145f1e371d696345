import FineTuneJSON
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// `finetune-dist inspect DIR`: what a model folder, a checkpoint or a LoRA adapter folder holds,
/// read without training anything: architecture, task and labels, parameters per group, tensors
/// and their dtypes, the tokenizer, and for a checkpoint its step and the options it was made with.
public struct Inspection: Encodable {
    public struct Group: Encodable { public var name: String, parameters: Int }
    public var path: String
    /// "model folder", "checkpoint" or "LoRA adapter on <base>".
    public var kind: String
    public var architecture: [String: String]
    public var task: String
    public var labels: [String]?
    public var parameters: Int
    public var groups: [Group]
    /// Tensors in the folder's safetensors files, by dtype.
    public var tensorsByDType: [String: Int]
    public var tokenizer: [String: String]?
    public var lora: LoRASettings?
    public var checkpointStep: Int?, checkpointEpoch: Int?
    public var checkpointOptions: [String: String]?

    enum CodingKeys: String, CodingKey {
        case path, kind, architecture, task, labels, parameters, groups, tensorsByDType = "tensors_by_dtype", tokenizer, lora
        case checkpointStep = "checkpoint_step", checkpointEpoch = "checkpoint_epoch", checkpointOptions = "checkpoint_options"
    }

    public static func inspect(_ path: String) throws -> Inspection {
        let source = FolderSource(path)
        let description = try ModelFolder.describe(source)
        let task = description.headTask ?? .classification(labels: ["(none)"])
        // A LoRA run's checkpoint holds its adapters beside the model (adapter_config.json says which).
        let lora = try description.adapter?.lora
            ?? source.data("adapter_config.json").map { try PeftAdapter.parseConfig($0, path: "\(path)/adapter_config.json").lora }
        let bundle = description.build(task: task, lora: lora)
        let model = bundle.model
        var architecture: [String: String] = [:]
        var tokenizer: [String: String]? = nil
        switch description.kind {
        case .mlp(let c):
            architecture = ["model_type": "mlp", "input_size": String(c.inputSize), "hidden_sizes": c.hiddenSizes.map(String.init).joined(separator: ","),
                            "activation": "\(c.activation)", "dropout": String(c.dropout)]
        case .bert(let b):
            let c = b.config
            architecture = ["model_type": c.family.rawValue, "layers": String(c.layers), "hidden_size": String(c.hiddenSize), "heads": String(c.heads),
                            "intermediate_size": String(c.intermediateSize), "vocab_size": String(c.vocabSize),
                            "max_position_embeddings": String(c.maxPositions), "hidden_act": c.hiddenAct, "pooling": b.pooling.rawValue,
                            "max_length": String(b.maxLength)]
            tokenizer = ["vocabulary": String(b.tokenizer.tokens.count), "kind": b.tokenizer.summary]
            if let p = b.projection { architecture["dense_module"] = "\(c.hiddenSize) -> \(p.outputs), \(p.activation.rawValue)\(p.bias ? "" : ", no bias")" }
        case .decoder(let d):
            let c = d.config
            architecture = ["model_type": c.modelType, "layers": String(c.layers), "hidden_size": String(c.hiddenSize), "heads": String(c.heads),
                            "key_value_heads": String(c.keyValueHeads), "intermediate_size": String(c.intermediateSize), "vocab_size": String(c.vocabSize),
                            "max_position_embeddings": String(c.maxPositions), "rope_theta": String(c.ropeTheta),
                            "tied_embeddings": String(c.tiedEmbeddings), "chat_template": d.tokenizer.chat == nil ? "none" : "ChatML"]
            tokenizer = ["vocabulary": String(d.tokenizer.bpe.tokens.count), "kind": d.tokenizer.bpe.summary]
        }
        // Parameters per group, counted from the tensors (the flat buffer pads each tensor to 16 floats).
        // A base model has no head yet (train creates it): only what the folder holds is counted.
        let groups = model.parameterGroups.filter { description.headTask != nil || $0.kind != .head }.map { group in
            Group(name: groupName(group.kind), parameters: model.layout.tensors.filter { group.range.contains($0.offset) }.reduce(0) { $0 + $1.count })
        }
        var dtypes: [String: Int] = [:]
        let files = description.adapter.map { ["\($0.path)/adapter_model.safetensors"] }
            ?? ["model.safetensors", "2_Dense/model.safetensors", "3_Dense/model.safetensors"].map { "\(path)/\($0)" }
        for file in files where FileManager.default.fileExists(atPath: file) {
            let data = try Data(contentsOf: URL(fileURLWithPath: file), options: .alwaysMapped)
            for entry in try SafetensorsFile(data: data, path: file).entries.values { dtypes[entry.dtype.rawValue, default: 0] += 1 }
        }
        var result = Inspection(path: path, kind: description.adapter.map { "LoRA adapter on \($0.basePath)" } ?? "model folder",
                                architecture: architecture, task: description.headTask == nil ? "none (a base model: train gives it a head)"
                                    : task == .maskedLanguageModel ? "masked-language model (train on labelled data gives it a classifier head)"
                                    : task == .causalLanguageModel ? "causal language model (a decoder)"
                                    : task.labels == nil ? "regression" : "classification",
                                labels: description.task?.labels, parameters: groups.reduce(0) { $0 + $1.parameters }, groups: groups,
                                tensorsByDType: dtypes, tokenizer: tokenizer, lora: lora)
        if let data = FileManager.default.contents(atPath: "\(path)/trainer_state.json") {
            let state = try decodeJSON(TrainerState.self, from: data)
            result.kind = "checkpoint"
            result.checkpointStep = state.step
            result.checkpointEpoch = state.epoch
            result.checkpointOptions = state.mathematicalOptions
        }
        return result
    }

    static func groupName(_ kind: ParameterGroup.Kind) -> String {
        switch kind {
        case .embeddings: return "embeddings"
        case .layer(let l): return "layer \(l)"
        case .adapters: return "LoRA adapters"
        case .head: return "head"
        }
    }
}
