import FineTuneJSON
import FineTuneKernels
import Foundation

/// config.json of a Llama-architecture decoder (transformers' LlamaConfig; Qwen2 is the same body
/// with biases on q, k and v), with transformers' field names. Fields this program does not use
/// stay in `raw` and are written back.
public struct DecoderConfig: Decodable, Sendable, Equatable {
    /// "llama" or "qwen2".
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var keyValueHeads: Int
    public var headSize: Int
    public var maxPositions: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    /// rope_scaling of type "linear" (positions divided by the factor); nil: none.
    public var ropeLinearFactor: Double?
    public var tiedEmbeddings: Bool
    /// Biases on the q, k, v projections (Qwen2; Llama's attention_bias) and on o (Llama's attention_bias only).
    public var qkvBias: Bool
    public var outputBias: Bool
    public var initializerRange: Double
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    /// Every field of the file, for writing it back.
    public var raw: [String: JSONValue] = [:]

    public static let modelTypes = ["llama", "qwen2"]

    typealias Field = ConfigField

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int, keyValueHeads: Int,
                maxPositions: Int, rmsNormEps: Double = 1e-5, ropeTheta: Double = 10_000, tiedEmbeddings: Bool = true,
                modelType: String = "llama", qkvBias: Bool = false, outputBias: Bool = false, bosTokenID: Int? = nil, eosTokenIDs: [Int] = []) throws {
        self.modelType = modelType
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.layers = layers; self.heads = heads; self.keyValueHeads = keyValueHeads
        headSize = hiddenSize / heads
        self.maxPositions = maxPositions; self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta
        ropeLinearFactor = nil
        self.tiedEmbeddings = tiedEmbeddings; self.qkvBias = qkvBias; self.outputBias = outputBias
        initializerRange = 0.02
        self.bosTokenID = bosTokenID; self.eosTokenIDs = eosTokenIDs
        try validate()
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Field.self)
        modelType = try c.string(Field("model_type"), default: "llama")
        guard Self.modelTypes.contains(modelType) else {
            throw FineTuneError("model_type \"\(modelType)\" is not a decoder family this program reads (\(Self.modelTypes.joined(separator: ", ")))")
        }
        vocabSize = try c.positiveInteger(Field("vocab_size"))
        hiddenSize = try c.positiveInteger(Field("hidden_size"))
        intermediateSize = try c.positiveInteger(Field("intermediate_size"))
        layers = try c.positiveInteger(Field("num_hidden_layers"))
        heads = try c.positiveInteger(Field("num_attention_heads"))
        keyValueHeads = try c.positiveInteger(Field("num_key_value_heads"), default: heads)
        headSize = try c.positiveInteger(Field("head_dim"), default: hiddenSize / heads)
        maxPositions = try c.positiveInteger(Field("max_position_embeddings"), default: 2048)
        rmsNormEps = try c.number(Field("rms_norm_eps"), default: 1e-6)
        // transformers 5 writes rope_parameters {rope_theta, rope_type, factor}; earlier versions rope_theta and rope_scaling.
        let parameters = try c.decodeIfPresent(JSONValue.self, forKey: Field("rope_parameters"))?.object
        if let theta = parameters?["rope_theta"] {
            guard let value = theta.number, value > 0 else { throw FineTuneError("\"rope_parameters\": \"rope_theta\" must be a positive number") }
            ropeTheta = value
        } else {
            ropeTheta = try c.number(Field("rope_theta"), default: 10_000)
        }
        ropeLinearFactor = nil
        let scalingValue = try parameters.map { JSONValue.object($0) } ?? c.decodeIfPresent(JSONValue.self, forKey: Field("rope_scaling"))
        if let scaling = scalingValue, scaling != .null {
            let type = scaling.object?["rope_type"]?.string ?? scaling.object?["type"]?.string
            guard type == "linear" || type == "default", let object = scaling.object else {
                throw FineTuneError("rope_scaling of type \"\(type ?? "?")\" is not supported (linear and default are)")
            }
            if type == "linear" {
                guard let factor = object["factor"]?.number, factor > 0 else { throw FineTuneError("rope_scaling: \"factor\" must be a positive number") }
                ropeLinearFactor = factor
            }
        }
        let act = try c.string(Field("hidden_act"), default: "silu")
        guard act == "silu" else { throw FineTuneError("hidden_act \"\(act)\" is not supported (silu)") }
        if case .bool(true)? = try c.decodeIfPresent(JSONValue.self, forKey: Field("mlp_bias")) {
            throw FineTuneError("mlp_bias true is not supported")
        }
        let attentionBias: Bool
        if case .bool(true)? = try c.decodeIfPresent(JSONValue.self, forKey: Field("attention_bias")) { attentionBias = true } else { attentionBias = false }
        qkvBias = modelType == "qwen2" || attentionBias
        outputBias = modelType == "llama" && attentionBias
        // transformers' default for both families is untied.
        if case .bool(true)? = try c.decodeIfPresent(JSONValue.self, forKey: Field("tie_word_embeddings")) { tiedEmbeddings = true } else { tiedEmbeddings = false }
        initializerRange = try c.number(Field("initializer_range"), default: 0.02)
        bosTokenID = try? c.nonNegativeInteger(Field("bos_token_id"), default: -1)
        if bosTokenID == -1 { bosTokenID = nil }
        switch try c.decodeIfPresent(JSONValue.self, forKey: Field("eos_token_id")) {
        case .array(let ids)?: eosTokenIDs = ids.compactMap { $0.number.map { Int($0) } }
        case let value?: eosTokenIDs = value.number.map { [Int($0)] } ?? []
        case nil: eosTokenIDs = []
        }
        try validate()
    }

    func validate() throws {
        guard heads % keyValueHeads == 0 else {
            throw FineTuneError("num_attention_heads \(heads) is not a multiple of num_key_value_heads \(keyValueHeads)")
        }
        guard headSize % 2 == 0 else { throw FineTuneError("the head size \(headSize) must be even (rotary embeddings rotate pairs)") }
    }

    /// Reads config.json; errors name `path` and the field.
    public static func decode(_ data: Data, path: String) throws -> DecoderConfig {
        var (config, raw) = try decodeConfig(DecoderConfig.self, from: data, path: path)
        config.raw = raw
        return config
    }

    /// The query and key/value widths: NH·HS and NKV·HS.
    public var queryWidth: Int { heads * headSize }
    public var keyValueWidth: Int { keyValueHeads * headSize }

    /// config.json as transformers writes a LlamaForCausalLM (the fields read, over any others of the original).
    public func object() -> [String: JSONValue] {
        var o = raw
        func int(_ v: Int) -> JSONValue { .integer(Int64(v)) }
        o["model_type"] = .string(modelType)
        o["architectures"] = .array([.string(modelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM")])
        o["vocab_size"] = int(vocabSize); o["hidden_size"] = int(hiddenSize); o["intermediate_size"] = int(intermediateSize)
        o["num_hidden_layers"] = int(layers); o["num_attention_heads"] = int(heads); o["num_key_value_heads"] = int(keyValueHeads)
        o["head_dim"] = int(headSize); o["max_position_embeddings"] = int(maxPositions)
        o["rms_norm_eps"] = .double(rmsNormEps)
        var rope: [String: JSONValue] = ["rope_theta": .double(ropeTheta), "rope_type": .string(ropeLinearFactor == nil ? "default" : "linear")]
        if let factor = ropeLinearFactor { rope["factor"] = .double(factor) }
        o["rope_parameters"] = .object(rope)
        o["rope_scaling"] = nil
        o["hidden_act"] = .string("silu"); o["tie_word_embeddings"] = .bool(tiedEmbeddings)
        if modelType == "llama" { o["attention_bias"] = .bool(qkvBias); o["mlp_bias"] = .bool(false) }
        o["initializer_range"] = .double(initializerRange)
        if let bosTokenID { o["bos_token_id"] = int(bosTokenID) }
        if eosTokenIDs.count == 1 { o["eos_token_id"] = int(eosTokenIDs[0]) } else if !eosTokenIDs.isEmpty { o["eos_token_id"] = .array(eosTokenIDs.map(int)) }
        o["torch_dtype"] = .string("float32")
        return o
    }
}
