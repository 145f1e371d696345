import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// A decoder's tokenizer and chat template: from a Hugging Face folder (tokenizer.json, and the
/// template from tokenizer_config.json or chat_template.jinja) or from a GGUF file's metadata
/// (tokenizer.ggml.*: the byte-level BPE transformers builds from it, GPT2Converter's).
public struct DecoderTokenizer {
    public let bpe: ByteLevelBPETokenizer
    /// The model's chat template, when it has one this program renders.
    public let chat: ChatTemplate?
    /// The tokenizer.json the tokenizer was read from (written into an exported folder).
    public let json: Data
    /// The raw chat template text (written into an exported folder).
    public let chatTemplateSource: String?

    public init(json: Data, chatTemplate: String?, source: String) throws {
        self.json = json
        bpe = try ByteLevelBPETokenizer(json: json, source: source)
        chatTemplateSource = chatTemplate
        chat = try chatTemplate.map { try ChatTemplate(template: $0, source: source) }
    }

    /// The tokenizer of a model path: a .gguf file or a Hugging Face folder.
    public static func load(_ path: String) throws -> DecoderTokenizer {
        if path.hasSuffix(".gguf") { return try DecoderTokenizer(gguf: try GGUFFile(path: path)) }
        let jsonPath = path + "/tokenizer.json"
        guard let data = FileManager.default.contents(atPath: jsonPath) else { throw FineTuneError("\(jsonPath): no such file (a decoder folder needs its tokenizer.json)") }
        var template: String? = nil
        if let jinja = FileManager.default.contents(atPath: path + "/chat_template.jinja") {
            template = String(decoding: jinja, as: UTF8.self)
        } else if let config = FileManager.default.contents(atPath: path + "/tokenizer_config.json"),
                  case .object(let o)? = try? StrictJSON.parse(config) {
            template = o["chat_template"]?.string
        }
        return try DecoderTokenizer(json: data, chatTemplate: template, source: jsonPath)
    }

    public init(gguf: GGUFFile) throws {
        try self.init(json: try Self.tokenizerJSON(gguf), chatTemplate: gguf.metadata["tokenizer.chat_template"]?.string, source: gguf.path)
    }

    /// tokenizer.json of a GGUF's "gpt2" tokenizer as transformers' GGUFGPTConverter builds it:
    /// the vocabulary and merges as stored, control tokens (token_type 3) as special added tokens,
    /// ByteLevel pre-tokenizer without prefix space, no normalizer, nothing added around a text.
    static func tokenizerJSON(_ gguf: GGUFFile) throws -> Data {
        let m = gguf.metadata
        guard m["tokenizer.ggml.model"]?.string == "gpt2" else {
            throw FineTuneError("\(gguf.path): tokenizer \"\(m["tokenizer.ggml.model"]?.string ?? "none")\" is not supported (byte-level BPE, \"gpt2\")")
        }
        guard let tokens = m["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), !tokens.isEmpty,
              let merges = m["tokenizer.ggml.merges"]?.array?.compactMap(\.string) else {
            throw FineTuneError("\(gguf.path): the tokenizer's tokens or merges are missing")
        }
        let types = m["tokenizer.ggml.token_type"]?.array?.compactMap(\.int) ?? []
        var added: [JSONValue] = []
        for (id, type) in types.enumerated() where type == 3 || type == 4 {
            added.append(.object(["id": .integer(Int64(id)), "content": .string(tokens[id]), "single_word": .bool(false), "lstrip": .bool(false),
                                  "rstrip": .bool(false), "normalized": .bool(type == 4), "special": .bool(type == 3)]))
        }
        var vocabulary: [String: JSONValue] = [:]
        for (id, token) in tokens.enumerated() { vocabulary[token] = .integer(Int64(id)) }
        let mergePairs: [JSONValue] = try merges.enumerated().map { rank, merge in
            let pair = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard pair.count == 2 else { throw FineTuneError("\(gguf.path): merge \(rank) \"\(merge)\" is not two tokens") }
            return .array(pair.map { .string(String($0)) })
        }
        let byteLevel: JSONValue = .object(["type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true), "use_regex": .bool(true)])
        let file: JSONValue = .object([
            "version": .string("1.0"), "truncation": .null, "padding": .null, "added_tokens": .array(added), "normalizer": .null,
            "pre_tokenizer": byteLevel, "post_processor": byteLevel, "decoder": byteLevel,
            "model": .object(["type": .string("BPE"), "dropout": .null, "unk_token": .null, "continuing_subword_prefix": .null,
                              "end_of_word_suffix": .null, "fuse_unk": .bool(false), "byte_fallback": .bool(false), "ignore_merges": .bool(false),
                              "vocab": .object(vocabulary), "merges": .array(mergePairs)]),
        ])
        return try JSONEncoder().encode(file)
    }
}

extension ByteLevelBPETokenizer {
    /// The text of `ids`: byte-mapped characters back to bytes (invalid UTF-8 becomes U+FFFD), added
    /// tokens as written; special ones left out with `skippingSpecial`.
    public func decode(_ ids: [Int32], skippingSpecial: Bool = false) -> String {
        let special = Set(specialIDs)
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokens.count {
            if special.contains(id) {
                if !skippingSpecial { bytes += Array(tokens[Int(id)].utf8) }
                continue
            }
            for character in tokens[Int(id)] {
                if let byte = Self.byteOfCharacter[character] { bytes.append(byte) } else { bytes += Array(String(character).utf8) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static let byteOfCharacter: [Character: UInt8] = {
        var map: [Character: UInt8] = [:]
        for (byte, s) in byteCharacters.enumerated() { map[Character(s)] = UInt8(byte) }
        return map
    }()
}

/// A conversation turn: {"role": "system" | "user" | "assistant", "content": ...}.
public struct ChatMessage: Equatable, Sendable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n` per message), as SmolLM2, Qwen2
/// and others write it in Jinja, optionally with a default system message when the first message
/// is not one. A template of another shape is refused with its name, not rendered differently.
public struct ChatTemplate: Equatable, Sendable {
    public let defaultSystem: String?
    public static let start = "<|im_start|>", end = "<|im_end|>"

    public init(template: String, source file: String) throws {
        // Jinja sources write the newline inside the quotes either as a newline or as "\\n".
        let source = template.replacingOccurrences(of: "\\n", with: "\n")
        guard source.contains("'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'") else {
            throw FineTuneError("\(file): the chat template is not ChatML (<|im_start|>role ... <|im_end|>); other templates are not supported")
        }
        // "{{ '<|im_start|>system\nYou are ...<|im_end|>\n' }}" under "messages[0]['role'] != 'system'".
        if source.contains("messages[0]['role'] != 'system'"), let open = source.range(of: "'<|im_start|>system\n"),
           let close = source.range(of: "<|im_end|>", range: open.upperBound..<source.endIndex) {
            defaultSystem = String(source[open.upperBound..<close.lowerBound])
        } else {
            defaultSystem = nil
        }
    }

    /// The conversation as text pieces, each marked whether training scores it: an assistant
    /// turn's content and its <|im_end|> are scored, everything else (system, user, the
    /// "<|im_start|>assistant\n" header, the newline after <|im_end|>) is context. With
    /// `addGenerationPrompt`, the header of the next assistant turn ends it.
    public func pieces(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> [(text: String, scored: Bool)] {
        var out: [(String, Bool)] = []
        if let defaultSystem, messages.first?.role != "system" {
            out.append((Self.start + "system\n" + defaultSystem + Self.end + "\n", false))
        }
        for message in messages {
            if message.role == "assistant" {
                out.append((Self.start + "assistant\n", false))
                out.append((message.content + Self.end, true))
                out.append(("\n", false))
            } else {
                out.append((Self.start + message.role + "\n" + message.content + Self.end + "\n", false))
            }
        }
        if addGenerationPrompt { out.append((Self.start + "assistant\n", false)) }
        return out
    }

    /// The conversation's token ids, and which of them training scores, as transformers tokenizes
    /// the rendered text: an assistant turn's header and content are tokenized together (a merge
    /// may cross the boundary, as "\n" + leading spaces does) and the tokens after the header's own
    /// are the scored ones; every other piece is bounded by special tokens, so tokenizing it alone
    /// is the same as tokenizing the whole text.
    public func tokenize(_ messages: [ChatMessage], addGenerationPrompt: Bool, with tokenize: (String) -> [Int32]) -> (ids: [Int32], scored: [Bool]) {
        var ids: [Int32] = [], scored: [Bool] = []
        var header: String? = nil
        for piece in pieces(messages, addGenerationPrompt: addGenerationPrompt) {
            if piece.scored, let h = header {
                let alone = tokenize(h), together = tokenize(h + piece.text)
                var k = 0
                while k < alone.count && k < together.count && alone[k] == together[k] { k += 1 }
                ids += together
                scored += Array(repeating: false, count: k) + Array(repeating: true, count: together.count - k)
                header = nil
                continue
            }
            if let h = header { let t = tokenize(h); ids += t; scored += Array(repeating: false, count: t.count); header = nil }
            if piece.text == Self.start + "assistant\n" { header = piece.text; continue }
            let t = tokenize(piece.text)
            ids += t
            scored += Array(repeating: piece.scored, count: t.count)
        }
        if let h = header { let t = tokenize(h); ids += t; scored += Array(repeating: false, count: t.count) }
        return (ids, scored)
    }

    /// The rendered text (what transformers' apply_chat_template gives).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        pieces(messages, addGenerationPrompt: addGenerationPrompt).map(\.text).joined()
    }
}
