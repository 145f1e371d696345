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

    static func loadFolder(_ folder: String, lora: DecoderLoRA?) throws -> DecoderModel {
        let configPath = folder + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else { throw FineTuneError("\(configPath): no such file") }
        let config = try DecoderConfig.decode(data, path: configPath)
        let weightsPath = folder + "/model.safetensors"
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw FineTuneError("\(weightsPath): no such file (a decoder folder holds its weights in one model.safetensors)")
        }
        let file = try SafetensorsFile(path: weightsPath)
        let model = DecoderModel(config: config, lora: lora)
        for spec in model.layout.tensors where !spec.name.contains(".lora_") {
            guard let entry = file.entries[spec.name] else { throw FineTuneError("\(weightsPath): no tensor \(spec.name) (a \(config.modelType) model of this config has one)") }
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(weightsPath): \(spec.name) has shape \(entry.shape), the config makes it \(spec.shape)")
            }
            try file.read(entry, into: model.parameters.at(spec))
        }
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
        let config = try config(of: gguf)
        let model = DecoderModel(config: config, lora: lora)
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
        return model
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
