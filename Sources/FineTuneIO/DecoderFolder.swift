import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// Loading a Llama-architecture decoder: a Hugging Face folder (config.json + model.safetensors,
/// model_type llama or qwen2) or a GGUF file (llama.cpp's format: the config from its metadata, the
/// weights dequantized to float32, q and k un-permuted back to transformers' rotate_half layout).
public enum DecoderLoading {
    /// Whether `path` looks like a decoder: a .gguf file, or a folder whose config.json names a decoder family.
    public static func isDecoder(_ path: String) -> Bool {
        if path.hasSuffix(".gguf") { return true }
        guard let data = FileManager.default.contents(atPath: path + "/config.json"),
              case .object(let o)? = try? StrictJSON.parse(data), let type = o["model_type"]?.string else { return false }
        return DecoderConfig.modelTypes.contains(type)
    }

    /// A decoder from a Hugging Face folder or a GGUF file, every base tensor loaded; fresh LoRA
    /// adapters initialised from `seed`.
    public static func load(_ path: String, lora: DecoderLoRA? = nil, seed: UInt64 = 0) throws -> DecoderModel {
        let model = path.hasSuffix(".gguf") ? try loadGGUF(try GGUFFile(path: path), lora: lora) : try loadFolder(path, lora: lora)
        model.initializeAdapters(seed: seed)
        return model
    }

    /// Reads every tensor of `model` from `file` under its own name (LoRA's only with `includingAdapters`).
    static func loadTensors(from file: SafetensorsFile, into model: DecoderModel, includingAdapters: Bool) throws {
        for spec in model.layout.tensors where includingAdapters || !spec.name.contains(".lora_") {
            guard let entry = file.entries[spec.name] else {
                throw FineTuneError("\(file.path): no tensor \(spec.name) (a \(model.config.modelType) model of this config has one)")
            }
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(file.path): \(spec.name) has shape \(entry.shape), the config makes it \(spec.shape)")
            }
            try file.read(entry, into: model.parameters.at(spec))
        }
    }

    static func loadFolder(_ folder: String, lora: DecoderLoRA?) throws -> DecoderModel {
        let configPath = folder + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else { throw FineTuneError("\(configPath): no such file") }
        let config = try DecoderConfig.decode(data, path: configPath)
        let weightsPath = folder + "/model.safetensors"
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw FineTuneError("\(weightsPath): no such file (a decoder folder holds its weights in one model.safetensors)")
        }
        let model = DecoderModel(config: config, lora: lora)
        try loadTensors(from: try SafetensorsFile(path: weightsPath), into: model, includingAdapters: false)
        return model
    }

    /// The config of a GGUF file's `general.architecture` ("llama") metadata.
    public static func config(of gguf: GGUFFile) throws -> DecoderConfig {
        let m = gguf.metadata
        let arch = m["general.architecture"]?.string ?? "?"
        guard arch == "llama" || arch == "qwen2" else {
            throw FineTuneError("\(gguf.path): architecture \"\(arch)\" is not supported (llama, qwen2)")
        }
        func int(_ key: String) throws -> Int {
            guard let v = m["\(arch).\(key)"]?.int, v > 0 else { throw FineTuneError("\(gguf.path): metadata \(arch).\(key) is missing or not a positive integer") }
            return v
        }
        guard let embeddings = gguf.tensorsByName["token_embd.weight"] else { throw FineTuneError("\(gguf.path): no tensor token_embd.weight") }
        let heads = try int("attention.head_count")
        var config = try DecoderConfig(vocabSize: embeddings.shape[0], hiddenSize: try int("embedding_length"),
                                       intermediateSize: try int("feed_forward_length"), layers: try int("block_count"), heads: heads,
                                       keyValueHeads: m["\(arch).attention.head_count_kv"]?.int ?? heads, maxPositions: try int("context_length"),
                                       rmsNormEps: m["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5,
                                       ropeTheta: m["\(arch).rope.freq_base"]?.double ?? 10_000,
                                       tiedEmbeddings: gguf.tensorsByName["output.weight"] == nil, modelType: arch,
                                       qkvBias: gguf.tensorsByName["blk.0.attn_q.bias"] != nil, outputBias: gguf.tensorsByName["blk.0.attn_output.bias"] != nil,
                                       bosTokenID: m["tokenizer.ggml.bos_token_id"]?.int, eosTokenIDs: m["tokenizer.ggml.eos_token_id"]?.int.map { [$0] } ?? [])
        if let scaling = m["\(arch).rope.scaling.type"]?.string, scaling != "none" {
            guard scaling == "linear", let factor = m["\(arch).rope.scaling.factor"]?.double else {
                throw FineTuneError("\(gguf.path): rope scaling \"\(scaling)\" is not supported (linear)")
            }
            config.ropeLinearFactor = factor
        }
        return config
    }

    /// GGUF tensor names of transformers' names (llama.cpp's convert_hf_to_gguf map).
    static func ggufName(_ name: String) -> String? {
        if name == "model.embed_tokens.weight" { return "token_embd.weight" }
        if name == "model.norm.weight" { return "output_norm.weight" }
        if name == "lm_head.weight" { return "output.weight" }
        let parts = name.split(separator: ".")
        guard parts.count >= 4, parts[0] == "model", parts[1] == "layers", let l = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        let map = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                   "self_attn.o_proj.weight": "attn_output.weight", "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                   "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"]
        return map[rest].map { "blk.\(l).\($0)" }
    }

    static func loadGGUF(_ gguf: GGUFFile, lora: DecoderLoRA?) throws -> DecoderModel {
        let model = DecoderModel(config: try config(of: gguf), lora: lora)
        try loadGGUF(gguf, into: model)
        return model
    }

    static func loadGGUF(_ gguf: GGUFFile, into model: DecoderModel) throws {
        let config = model.config
        for spec in model.layout.tensors where !spec.name.contains(".lora_") {
            guard let name = ggufName(spec.name), let info = gguf.tensorsByName[name] else {
                throw FineTuneError("\(gguf.path): no tensor for \(spec.name) (\(ggufName(spec.name) ?? "no GGUF name"))")
            }
            guard info.shape == spec.shape else { throw FineTuneError("\(gguf.path): \(name) has shape \(info.shape), the metadata makes it \(spec.shape)") }
            var values = try gguf.floats(name)
            // llama.cpp stores q and k rows interleaved per head (pairs i, i + HS/2 side by side) for
            // its rotary kernel; transformers' rotate_half wants them split by halves.
            if name.hasSuffix("attn_q.weight") || name.hasSuffix("attn_q.bias") { values = unpermute(values, heads: config.heads, rows: spec.shape[0]) }
            if name.hasSuffix("attn_k.weight") || name.hasSuffix("attn_k.bias") { values = unpermute(values, heads: config.keyValueHeads, rows: spec.shape[0]) }
            model.parameters.at(spec).update(from: values, count: spec.count)
        }
    }

    /// transformers' reverse_permute_weights: rows [heads, HS/2, 2] → [heads, 2, HS/2], each row `width` values.
    static func unpermute(_ values: [Float], heads: Int, rows: Int) -> [Float] {
        let width = values.count / rows, half = rows / heads / 2
        var out = values
        for h in 0..<heads {
            for i in 0..<half {
                for pair in 0..<2 {
                    let from = (h * half * 2 + i * 2 + pair) * width, to = (h * half * 2 + pair * half + i) * width
                    for c in 0..<width { out[to + c] = values[from + c] }
                }
            }
        }
        return out
    }
}

/// What a decoder model path holds, read without its weights: the config, the tokenizer and chat
/// template, where the weights are, and the LoRA adapters a checkpoint of a LoRA run carries.
public struct DecoderDescription {
    public enum Weights {
        /// A GGUF file (dequantized when loaded).
        case gguf(String)
        /// model.safetensors of a folder or a checkpoint, under transformers' names (and LoRA's).
        case files(ModelFileSource)
    }
    public let config: DecoderConfig
    public let tokenizer: DecoderTokenizer
    public let weights: Weights
    /// The adapters of a LoRA run's checkpoint or export (decoder_lora.json).
    public let lora: DecoderLoRA?
    /// The longest input a run uses by default: the positions the model has, at most this.
    public static let defaultMaxLength = 512
    public var maxLength: Int { min(config.maxPositions, Self.defaultMaxLength) }

    /// A .gguf file, or a folder / checkpoint whose config.json names a decoder family.
    public static func describe(gguf path: String) throws -> DecoderDescription {
        let file = try GGUFFile(path: path)
        return DecoderDescription(config: try DecoderLoading.config(of: file), tokenizer: try DecoderTokenizer(gguf: file), weights: .gguf(path), lora: nil)
    }

    static func describe(_ source: ModelFileSource, configData: Data, path: String) throws -> DecoderDescription {
        let config = try DecoderConfig.decode(configData, path: path)
        guard let json = source.data("tokenizer.json") else {
            throw FineTuneError("\(source.name)/tokenizer.json: missing (a decoder folder needs its tokenizer)")
        }
        var template = source.data("chat_template.jinja").map { String(decoding: $0, as: UTF8.self) }
        if template == nil, let data = source.data("tokenizer_config.json"), case .object(let o)? = try? StrictJSON.parse(data) {
            template = o["chat_template"]?.string
        }
        let tokenizer = try DecoderTokenizer(json: json, chatTemplate: template, source: "\(source.name)/tokenizer.json")
        var lora: DecoderLoRA? = nil
        if let data = source.data("decoder_lora.json") { lora = try DecoderLoRA.decode(data, path: "\(source.name)/decoder_lora.json") }
        return DecoderDescription(config: config, tokenizer: tokenizer, weights: .files(source), lora: lora)
    }

    /// The files another rank describes the same model from (config, tokenizer, template, LoRA).
    func resolvedFiles() throws -> [String: Data] {
        var files: [String: Data] = ["config.json": try prettyJSON(config.object()), "tokenizer.json": tokenizer.json]
        if let template = tokenizer.chatTemplateSource { files["chat_template.jinja"] = Data(template.utf8) }
        if let lora { files["decoder_lora.json"] = try lora.encoded() }
        return files
    }

    func loadWeights(into model: DecoderModel) throws {
        switch weights {
        case .gguf(let path): try DecoderLoading.loadGGUF(try GGUFFile(path: path), into: model)
        case .files(let source):
            guard let file = try source.safetensors("model.safetensors") else {
                throw FineTuneError("\(source.name)/model.safetensors: missing")
            }
            // A base model's file has no adapters (they start fresh); a checkpoint's has them all.
            let hasAdapters = model.layout.tensors.contains { $0.name.contains(".lora_") && file.entries[$0.name] != nil }
            try DecoderLoading.loadTensors(from: file, into: model, includingAdapters: hasAdapters)
        }
    }
}

extension DecoderLoRA {
    /// decoder_lora.json: {"r", "lora_alpha", "lora_dropout", "target_modules"} as PEFT names them.
    func encoded() throws -> Data {
        try prettyJSON(JSONValue.object(["r": .integer(Int64(rank)), "lora_alpha": .double(alpha), "lora_dropout": .double(dropout),
                                         "target_modules": .array(targets.map { .string($0.rawValue) })]))
    }
    static func decode(_ data: Data, path: String) throws -> DecoderLoRA {
        guard case .object(let o)? = try? StrictJSON.parse(data), let r = o["r"]?.number, let alpha = o["lora_alpha"]?.number,
              let names = o["target_modules"]?.array?.compactMap(\.string) else {
            throw FineTuneError("\(path): not a LoRA description (r, lora_alpha, lora_dropout, target_modules)")
        }
        return DecoderLoRA(rank: Int(r), alpha: alpha, dropout: o["lora_dropout"]?.number ?? 0, targets: try DecoderProjection.parse(names.joined(separator: ",")))
    }
}

/// A decoder's folders: checkpoints in this program's format (every tensor under its own name,
/// adapters included, decoder_lora.json naming them) and exports as transformers loads them
/// (LlamaForCausalLM / Qwen2ForCausalLM: merged weights, tokenizer, chat template, generation
/// config) with, for a LoRA run, the adapter in PEFT's format under adapter/.
enum DecoderFolder {
    static func tokenizerFiles(_ d: DecoderDescription, maxLength: Int) throws -> [String: Data] {
        var config: [String: JSONValue] = ["tokenizer_class": .string("PreTrainedTokenizerFast"), "model_max_length": .integer(Int64(maxLength)),
                                           "clean_up_tokenization_spaces": .bool(false), "add_bos_token": .bool(false)]
        func name(_ id: Int?) -> JSONValue { id.flatMap { $0 >= 0 && $0 < d.tokenizer.bpe.tokens.count ? .string(d.tokenizer.bpe.tokens[$0]) : nil } ?? .null }
        config["bos_token"] = name(d.config.bosTokenID)
        config["eos_token"] = name(d.config.eosTokenIDs.first)
        config["pad_token"] = name(d.config.eosTokenIDs.first)
        if let template = d.tokenizer.chatTemplateSource { config["chat_template"] = .string(template) }
        return ["tokenizer.json": d.tokenizer.json, "tokenizer_config.json": try prettyJSON(JSONValue.object(config))]
    }

    static func internalFiles(_ bundle: ModelBundle, model: DecoderModel) throws -> [String: Data] {
        let d = bundle.decoder!
        var files = try tokenizerFiles(d, maxLength: bundle.maxLength ?? d.maxLength)
        files["config.json"] = try prettyJSON(model.config.object())
        if let template = d.tokenizer.chatTemplateSource { files["chat_template.jinja"] = Data(template.utf8) }
        if let lora = model.decoderLoRA { files["decoder_lora.json"] = try lora.encoded() }
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "pt"]
        for spec in model.layout.tensors {
            writer.add(spec.name, shape: spec.shape, floats: UnsafeBufferPointer(start: model.parameters.at(spec), count: spec.count))
        }
        files["model.safetensors"] = try writer.serialized()
        return files
    }

    static func exportFiles(_ bundle: ModelBundle, model: DecoderModel) throws -> [String: Data] {
        let d = bundle.decoder!
        var files = try tokenizerFiles(d, maxLength: bundle.maxLength ?? d.maxLength)
        files["config.json"] = try prettyJSON(model.config.object())
        var generation: [String: JSONValue] = ["transformers_version": .string("5.0.0")]
        if let bos = model.config.bosTokenID { generation["bos_token_id"] = .integer(Int64(bos)) }
        if let eos = model.config.eosTokenIDs.first { generation["eos_token_id"] = .integer(Int64(eos)); generation["pad_token_id"] = .integer(Int64(eos)) }
        files["generation_config.json"] = try prettyJSON(JSONValue.object(generation))
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "pt"]
        for spec in model.layout.tensors where !spec.name.contains(".lora_") {
            if let merged = model.mergedWeight(spec) {
                merged.withUnsafeBufferPointer { writer.add(spec.name, shape: spec.shape, floats: $0) }
            } else {
                writer.add(spec.name, shape: spec.shape, floats: UnsafeBufferPointer(start: model.parameters.at(spec), count: spec.count))
            }
        }
        files["model.safetensors"] = try writer.serialized()
        if let lora = model.decoderLoRA {
            var adapter = SafetensorsWriter()
            adapter.metadata = ["format": "pt"]
            for spec in model.layout.tensors where spec.name.contains(".lora_") {
                adapter.add("base_model.model." + spec.name, shape: spec.shape, floats: UnsafeBufferPointer(start: model.parameters.at(spec), count: spec.count))
            }
            files["adapter/adapter_model.safetensors"] = try adapter.serialized()
            let config: [String: JSONValue] = [
                "peft_type": .string("LORA"), "task_type": .string("CAUSAL_LM"), "base_model_name_or_path": .string(bundle.baseModelPath ?? ""),
                "r": .integer(Int64(lora.rank)), "lora_alpha": .double(lora.alpha), "lora_dropout": .double(lora.dropout),
                "target_modules": .array(lora.targets.map { .string($0.rawValue) }), "bias": .string("none"), "modules_to_save": .null,
                "fan_in_fan_out": .bool(false), "inference_mode": .bool(true), "init_lora_weights": .bool(true), "use_rslora": .bool(false),
                "use_dora": .bool(false), "layers_to_transform": .null, "layers_pattern": .null, "rank_pattern": .object([:]),
                "alpha_pattern": .object([:]), "revision": .null,
            ]
            files["adapter/adapter_config.json"] = try prettyJSON(JSONValue.object(config))
        }
        return files
    }
}
