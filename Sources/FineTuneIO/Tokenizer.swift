import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// What the rest of the program needs of a text model's tokenizer (WordPiece for BERT, DistilBERT and MPNet,
/// byte-level BPE for RoBERTa): ids of a text, the framing of one text or a pair, and the special
/// tokens masked-language modelling and fill-mask use.
public protocol TextTokenizer: AnyObject {
    /// Token strings by id (as the vocabulary spells them).
    var tokens: [String] { get }
    /// The tokens a single text is framed with: [CLS] ... [SEP] (BERT), <s> ... </s> (MPNet, RoBERTa).
    var clsID: Int32 { get }
    var sepID: Int32 { get }
    /// The mask token as a fill-mask input writes it ("[MASK]", "<mask>"), nil without one.
    var maskToken: String? { get }
    /// One line for `inspect`.
    var summary: String { get }
    /// Token ids of a text, without framing.
    func tokenize(_ text: String) -> [Int32]
    /// The same for text given as UTF-8 bytes (valid UTF-8).
    func tokenize(utf8: UnsafeBufferPointer<UInt8>) -> [Int32]
    /// The framed ids (and token type ids) of a text or a pair, truncated longest-first to `maxLength` tokens.
    func encode(_ text: String, pair: String?, maxLength: Int?) -> (ids: [Int32], typeIDs: [Int32])
    /// The id of a token of the vocabulary, if it has it.
    func id(of token: String) -> Int32?
    /// Which tokens continue a word (whole-word masking joins them to the token before).
    var continuesWord: [Bool] { get }
    /// Ids never masked or predicted as themselves (framing, padding, unknown, mask).
    var specialIDs: [Int32] { get }
}

extension TextTokenizer {
    public func tokenize(utf8: UnsafeBufferPointer<UInt8>) -> [Int32] { tokenize(String(decoding: utf8, as: UTF8.self)) }
    public var maskID: Int32? { maskToken.flatMap(id(of:)) }
    public func encode(_ text: String) -> (ids: [Int32], typeIDs: [Int32]) { encode(text, pair: nil, maxLength: nil) }

    /// What masked-language modelling needs of the vocabulary.
    public func maskingSettings(probability: Double, wholeWord: Bool, vocabularySize: Int) throws -> MaskingSettings {
        guard let maskToken, let mask = id(of: maskToken) else {
            throw FineTuneError("the vocabulary has no mask token ([MASK] or <mask>), which masked-language modelling needs")
        }
        return MaskingSettings(probability: probability, wholeWord: wholeWord, maskID: mask, vocabularySize: vocabularySize,
                               specialIDs: Set(specialIDs + [mask]), continuation: continuesWord)
    }
}

/// A post-processor's framing, as tokenizers' TemplateProcessing states it (BertProcessing and
/// RobertaProcessing are two fixed templates): special ids and the sequences, each with its type id.
public struct FramingTemplate: Sendable, Equatable {
    public enum Piece: Sendable, Equatable { case special([Int32], type: Int32), first(type: Int32), second(type: Int32) }
    public let single: [Piece]
    public let pair: [Piece]

    /// BERT: [CLS] A [SEP] (B [SEP]), B's part of type 1.
    public static func bert(cls: Int32, sep: Int32) -> FramingTemplate {
        FramingTemplate(single: [.special([cls], type: 0), .first(type: 0), .special([sep], type: 0)],
                        pair: [.special([cls], type: 0), .first(type: 0), .special([sep], type: 0), .second(type: 1), .special([sep], type: 1)])
    }
    /// RoBERTa and MPNet: <s> A </s> (</s> B </s>). Type ids are all 0: neither model takes token
    /// types (transformers does not pass them), and RoBERTa's table has one row.
    public static func roberta(cls: Int32, sep: Int32) -> FramingTemplate {
        FramingTemplate(single: [.special([cls], type: 0), .first(type: 0), .special([sep], type: 0)],
                        pair: [.special([cls], type: 0), .first(type: 0), .special([sep, sep], type: 0), .second(type: 0), .special([sep], type: 0)])
    }

    /// No framing: the text's tokens as they are (a decoder's tokenizer); a pair is the two texts one after the other.
    public static let plain = FramingTemplate(single: [.first(type: 0)], pair: [.first(type: 0), .second(type: 0)])

    /// The first and last special ids of a single text (what corpus windows are framed with).
    var singleEnds: (first: Int32, last: Int32)? {
        guard case .special(let a, _)? = single.first, case .special(let b, _)? = single.last, let first = a.first, let last = b.last else { return nil }
        return (first, last)
    }

    func specialCount(_ pieces: [Piece]) -> Int {
        pieces.reduce(0) { n, piece in if case .special(let ids, _) = piece { return n + ids.count }; return n }
    }

    /// The framed ids and type ids of `a` (and `b`), truncated longest-first so the whole fits `maxLength`.
    func frame(_ a: [Int32], _ b: [Int32]?, maxLength: Int?) -> (ids: [Int32], typeIDs: [Int32]) {
        let pieces = b == nil ? single : pair
        var (a, b) = (a, b)
        if let maxLength { (a, b) = truncateLongestFirst(a, b, budget: max(0, maxLength - specialCount(pieces))) }
        var ids: [Int32] = [], types: [Int32] = []
        for piece in pieces {
            let (part, type): ([Int32], Int32)
            switch piece {
            case .special(let s, let t): (part, type) = (s, t)
            case .first(let t): (part, type) = (a, t)
            case .second(let t): (part, type) = (b ?? [], t)
            }
            ids += part
            types += [Int32](repeating: type, count: part.count)
        }
        return (ids, types)
    }

    /// tokenizer.json's post_processor (BertProcessing, RobertaProcessing, TemplateProcessing);
    /// another is an error naming it.
    static func read(_ processor: JSONValue?, source: String) throws -> FramingTemplate? {
        guard let object = processor?.object else { return nil }
        let type = object["type"]?.string ?? "none"
        func pairID(_ key: String) throws -> Int32 {
            guard let n = object[key]?.array?.last?.number, n >= 0 else { throw FineTuneError("\(source): the \(type)'s \(key) is not a [token, id] pair") }
            return Int32(n)
        }
        switch type {
        case "BertProcessing": return .bert(cls: try pairID("cls"), sep: try pairID("sep"))
        case "RobertaProcessing": return .roberta(cls: try pairID("cls"), sep: try pairID("sep"))
        case "TemplateProcessing":
            let specials = object["special_tokens"]?.object ?? [:]
            func pieces(_ key: String) throws -> [Piece] {
                guard let list = object[key]?.array else { throw FineTuneError("\(source): TemplateProcessing has no \"\(key)\" template") }
                return try list.map { item in
                    if let special = item.object?["SpecialToken"]?.object, let name = special["id"]?.string {
                        guard let ids = specials[name]?.object?["ids"]?.array?.compactMap(\.number), !ids.isEmpty else {
                            throw FineTuneError("\(source): TemplateProcessing's special token \"\(name)\" has no ids")
                        }
                        return .special(ids.map { Int32($0) }, type: Int32(special["type_id"]?.number ?? 0))
                    }
                    if let sequence = item.object?["Sequence"]?.object, let name = sequence["id"]?.string {
                        let type = Int32(sequence["type_id"]?.number ?? 0)
                        return name == "A" ? .first(type: type) : .second(type: type)
                    }
                    throw FineTuneError("\(source): a TemplateProcessing piece this program does not read: \(item)")
                }
            }
            return FramingTemplate(single: try pieces("single"), pair: try pieces("pair"))
        default:
            throw FineTuneError("\(source): the post-processor \(type) is not supported (BertProcessing, RobertaProcessing and TemplateProcessing are)")
        }
    }
}

/// tokenizer.json's added tokens, cut out of the text before anything else as tokenizers'
/// AddedVocabulary does: leftmost match, longest first; lstrip/rstrip take the whitespace beside
/// a match; single_word only matches between non-word characters. Tokens marked `normalized` are
/// matched in the normalised text (the caller's second pass), the others in the raw text.
struct AddedTokens: Sendable {
    struct Token: Sendable {
        let content: [Unicode.Scalar]
        let id: Int32
        let lstrip: Bool, rstrip: Bool, singleWord: Bool, normalized: Bool
    }
    enum Segment { case text([Unicode.Scalar]), added(Int32) }
    /// Longest first.
    let tokens: [Token]

    init(_ tokens: [Token]) { self.tokens = tokens.sorted { $0.content.count > $1.content.count } }

    /// The tokens of one matching pass.
    func pass(normalized: Bool) -> AddedTokens { AddedTokens(tokens.filter { $0.normalized == normalized }) }

    func split(_ text: [Unicode.Scalar]) -> [Segment] {
        guard !tokens.isEmpty else { return [.text(text)] }
        var segments: [Segment] = [], segmentStart = 0, i = 0
        while i < text.count {
            guard let token = tokens.first(where: { matches($0, in: text, at: i) }) else { i += 1; continue }
            var start = i, end = i + token.content.count
            if token.lstrip { while start > segmentStart && text[start - 1].properties.isWhitespace { start -= 1 } }
            if token.rstrip { while end < text.count && text[end].properties.isWhitespace { end += 1 } }
            if start > segmentStart { segments.append(.text(Array(text[segmentStart..<start]))) }
            segments.append(.added(token.id))
            segmentStart = end
            i = end
        }
        if segmentStart < text.count { segments.append(.text(Array(text[segmentStart...]))) }
        return segments
    }

    private func matches(_ token: Token, in text: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + token.content.count <= text.count, !token.content.isEmpty else { return false }
        for k in 0..<token.content.count where text[i + k] != token.content[k] { return false }
        if token.singleWord {
            let isWordChar = { (s: Unicode.Scalar) in s.properties.isAlphabetic || s.properties.numericType != nil || s == "_" }
            if i > 0 && isWordChar(text[i - 1]) { return false }
            if i + token.content.count < text.count && isWordChar(text[i + token.content.count]) { return false }
        }
        return true
    }
}

/// The parts of tokenizer.json the tokenizers read; a component is kept as JSON so each tokenizer
/// can name the one it does not implement.
struct TokenizerFile: Decodable {
    struct Model: Decodable {
        var type: String?
        /// Every field (vocab, merges, unk_token, ...).
        var fields: [String: JSONValue]
        init(from decoder: Decoder) throws {
            fields = try decoder.singleValueContainer().decode([String: JSONValue].self)
            type = fields["type"]?.string
        }
        /// The token -> id vocabulary (WordPiece's and BPE's), as a list by id.
        func vocabulary(source: String) throws -> [String] {
            guard let vocab = fields["vocab"]?.object else { throw FineTuneError("\(source): the \(type ?? "") model has no vocabulary object") }
            var list = [String?](repeating: nil, count: vocab.count)
            for (token, value) in vocab {
                guard let n = value.number, n >= 0, Int(n) < list.count, list[Int(n)] == nil else {
                    throw FineTuneError("\(source): vocabulary ids are not 0..<\(vocab.count)")
                }
                list[Int(n)] = token
            }
            return list.map { $0! }
        }
    }
    struct Added: Decodable {
        var id: Int
        var content: String
        var lstrip: Bool?, rstrip: Bool?, singleWord: Bool?, normalized: Bool?, special: Bool?
        enum CodingKeys: String, CodingKey { case id, content, lstrip, rstrip, singleWord = "single_word", normalized, special }
    }
    var model: Model?
    var normalizer: JSONValue?
    var preTokenizer: JSONValue?
    var postProcessor: JSONValue?
    var addedTokens: [Added]
    enum CodingKeys: String, CodingKey {
        case model, normalizer, preTokenizer = "pre_tokenizer", postProcessor = "post_processor", addedTokens = "added_tokens"
    }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(Model.self, forKey: .model)
        normalizer = try c.decodeIfPresent(JSONValue.self, forKey: .normalizer)
        preTokenizer = try c.decodeIfPresent(JSONValue.self, forKey: .preTokenizer)
        postProcessor = try c.decodeIfPresent(JSONValue.self, forKey: .postProcessor)
        addedTokens = try c.decodeIfPresent([Added].self, forKey: .addedTokens) ?? []
    }

    static func read(_ data: Data, source: String) throws -> TokenizerFile {
        do { return try decodeJSON(TokenizerFile.self, from: data) } catch {
            throw FineTuneError("\(source): \(userMessage(for: error))")
        }
    }

    /// The added tokens; `normalizedByDefault`: tokenizers' default for a token that does not say
    /// (true for non-special tokens).
    var added: AddedTokens {
        AddedTokens(addedTokens.map {
            AddedTokens.Token(content: Array($0.content.unicodeScalars), id: Int32($0.id), lstrip: $0.lstrip ?? false, rstrip: $0.rstrip ?? false,
                              singleWord: $0.singleWord ?? false, normalized: $0.normalized ?? !($0.special ?? false))
        })
    }
}

/// Truncates a text (and its pair) to `budget` tokens as Hugging Face's longest-first strategy:
/// a pair keeps the shorter side whole when it fits in half, else both get half (the first the
/// smaller half).
func truncateLongestFirst(_ a: [Int32], _ b: [Int32]?, budget: Int) -> ([Int32], [Int32]?) {
    guard let b else { return (Array(a.prefix(budget)), nil) }
    guard a.count + b.count > budget else { return (a, b) }
    var n1 = a.count, n2 = b.count
    let swapped = n1 > n2
    if swapped { swap(&n1, &n2) }
    n2 = n1 > budget ? n1 : max(n1, budget - n1)
    if n1 + n2 > budget { n1 = budget / 2; n2 = n1 + budget % 2 }
    if swapped { swap(&n1, &n2) }
    return (Array(a.prefix(n1)), Array(b.prefix(n2)))
}
