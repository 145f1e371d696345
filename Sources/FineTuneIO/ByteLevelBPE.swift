import FineTuneJSON
import FineTuneKernels
import Foundation

/// Byte-level BPE as Hugging Face `tokenizers` runs it from a tokenizer.json (GPT-2, RoBERTa and
/// the decoders after them): added tokens are cut out of the raw text first (`<mask>` with lstrip
/// takes the spaces before it), the rest is split by the GPT-2 pre-tokenizer pattern, each piece's
/// UTF-8 bytes become the printable characters of GPT-2's byte map, and merges are applied by rank;
/// RobertaProcessing frames the ids (`<s> A </s>`, `<s> A </s></s> B </s>`). A component of the
/// file that this reader does not implement is an error naming it (not a silently different split).
public struct ByteLevelBPETokenizer: Sendable {
    /// Token strings by id (the byte-mapped form).
    public let tokens: [String]
    let ids: [String: Int32]
    /// Merge ranks: "left right" -> rank (lower merges first).
    let ranks: [String: Int]
    let addedTokens: [AddedToken]
    /// RobertaProcessing's ids.
    public let clsID: Int32, sepID: Int32
    public let source: String

    struct AddedToken: Sendable {
        let content: [Unicode.Scalar]
        let id: Int32
        let lstrip: Bool, rstrip: Bool, singleWord: Bool
    }

    /// The tokenizer of a tokenizer.json's bytes; `source` names the file in errors.
    public init(json data: Data, source: String) throws {
        self.source = source
        let file: TokenizerFile
        do { file = try decodeJSON(TokenizerFile.self, from: data) } catch {
            throw FineTuneError("\(source): \(userMessage(for: error))")
        }
        func unsupported(_ what: String) -> FineTuneError {
            FineTuneError("\(source): \(what) is not supported (byte-level BPE reads a BPE model, no normalizer, the ByteLevel pre-tokenizer and RobertaProcessing)")
        }
        guard file.model.type == "BPE" else { throw unsupported("model type \"\(file.model.type ?? "none")\"") }
        if let n = file.normalizer, n != .null { throw unsupported("the normalizer \(n.object?["type"]?.string ?? "\(n)")") }
        guard let pre = file.preTokenizer?.object, pre["type"]?.string == "ByteLevel" else {
            throw unsupported("the pre-tokenizer \(file.preTokenizer?.object?["type"]?.string ?? "none")")
        }
        if case .bool(true) = pre["add_prefix_space"] ?? .null { throw unsupported("ByteLevel's add_prefix_space true") }
        if case .bool(false) = pre["use_regex"] ?? .null { throw unsupported("ByteLevel's use_regex false") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = file.model.extra[key], v != .null { throw unsupported("the BPE model's \(key)") }
        }
        if case .bool(true) = file.model.extra["byte_fallback"] ?? .null { throw unsupported("the BPE model's byte_fallback") }
        if case .bool(true) = file.model.extra["ignore_merges"] ?? .null { throw unsupported("the BPE model's ignore_merges") }
        guard let processor = file.postProcessor?.object, processor["type"]?.string == "RobertaProcessing",
              let cls = processor["cls"]?.array?.last?.number, let sep = processor["sep"]?.array?.last?.number else {
            throw unsupported("the post-processor \(file.postProcessor?.object?["type"]?.string ?? "none")")
        }
        var list = [String?](repeating: nil, count: file.model.vocab.count)
        for (token, id) in file.model.vocab {
            guard id >= 0, id < list.count, list[id] == nil else { throw FineTuneError("\(source): vocabulary ids are not 0..<\(list.count)") }
            list[id] = token
        }
        tokens = list.map { $0! }
        ids = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($0.element, Int32($0.offset)) })
        var ranks: [String: Int] = [:]
        for (rank, merge) in file.model.merges.enumerated() {
            // "left right" (older files) or ["left", "right"] (tokenizers 0.20 and later).
            let pair: [String]
            switch merge {
            case .string(let s): pair = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            case .array(let items): pair = items.compactMap(\.string)
            default: pair = []
            }
            guard pair.count == 2 else { throw FineTuneError("\(source): merge \(rank) is not a pair of tokens") }
            if ranks[pair[0] + " " + pair[1]] == nil { ranks[pair[0] + " " + pair[1]] = rank }
        }
        self.ranks = ranks
        addedTokens = file.addedTokens.map {
            AddedToken(content: Array($0.content.unicodeScalars), id: Int32($0.id), lstrip: $0.lstrip ?? false, rstrip: $0.rstrip ?? false,
                       singleWord: $0.singleWord ?? false)
        }.sorted { $0.content.count > $1.content.count }  // the longest match first
        clsID = Int32(cls); sepID = Int32(sep)
    }

    /// The ids of `text` without the framing tokens.
    public func tokenize(_ text: String) -> [Int32] {
        var out: [Int32] = []
        for segment in splitAddedTokens(Array(text.unicodeScalars)) {
            switch segment {
            case .added(let id): out.append(id)
            case .text(let scalars):
                for piece in Self.preTokenize(scalars) { out += bpe(piece) }
            }
        }
        return out
    }

    /// `<s> A </s>` or `<s> A </s></s> B </s>`, truncated longest-first to `maxLength` ids; type ids
    /// are all 0 (RoBERTa has one token type).
    public func encode(_ text: String, pair: String? = nil, maxLength: Int? = nil) -> (ids: [Int32], typeIDs: [Int32]) {
        var (a, b) = (tokenize(text), pair.map(tokenize))
        if let maxLength { (a, b) = truncateLongestFirst(a, b, budget: max(0, maxLength - (b == nil ? 2 : 4))) }
        var ids = [clsID] + a + [sepID]
        if let b { ids += [sepID] + b + [sepID] }
        return (ids, [Int32](repeating: 0, count: ids.count))
    }

    // MARK: Added tokens

    enum Segment { case text([Unicode.Scalar]), added(Int32) }

    /// The text cut at every added token (leftmost, longest first), lstrip/rstrip taking the
    /// whitespace beside a match, as tokenizers' AddedVocabulary does on the raw text.
    func splitAddedTokens(_ text: [Unicode.Scalar]) -> [Segment] {
        guard !addedTokens.isEmpty else { return [.text(text)] }
        var segments: [Segment] = [], segmentStart = 0, i = 0
        while i < text.count {
            guard let token = addedTokens.first(where: { matches($0, in: text, at: i) }) else { i += 1; continue }
            var start = i, end = i + token.content.count
            if token.lstrip { while start > segmentStart && isRustWhitespace(text[start - 1]) { start -= 1 } }
            if token.rstrip { while end < text.count && isRustWhitespace(text[end]) { end += 1 } }
            if start > segmentStart { segments.append(.text(Array(text[segmentStart..<start]))) }
            segments.append(.added(token.id))
            segmentStart = end
            i = end
        }
        if segmentStart < text.count { segments.append(.text(Array(text[segmentStart...]))) }
        return segments
    }

    private func matches(_ token: AddedToken, in text: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + token.content.count <= text.count, !token.content.isEmpty else { return false }
        for k in 0..<token.content.count where text[i + k] != token.content[k] { return false }
        if token.singleWord {
            let isWordChar = { (s: Unicode.Scalar) in s.properties.isAlphabetic || s.properties.numericType != nil || s == "_" }
            if i > 0 && isWordChar(text[i - 1]) { return false }
            if i + token.content.count < text.count && isWordChar(text[i + token.content.count]) { return false }
        }
        return true
    }

    /// Rust's char::is_whitespace (Unicode White_Space).
    private func isRustWhitespace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }

    // MARK: The GPT-2 pre-tokenizer

    enum Kind { case letter, number, space, other }

    /// Oniguruma's classes as tokenizers' pattern uses them: \p{L}, \p{N}, and \s (tab to carriage
    /// return, NEL, and the Zs/Zl/Zp separators).
    static func kind(_ s: Unicode.Scalar) -> Kind {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return .space
        default: return (0x09...0x0D).contains(s.value) || s.value == 0x85 ? .space : .other
        }
    }

    /// The pieces of `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
    /// matched left to right, alternatives in that order (as a backtracking regex engine does).
    public static func preTokenize(_ text: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        let kinds = text.map(kind)
        var i = 0
        func run(from j: Int, of k: Kind) -> Int {
            var e = j
            while e < text.count && kinds[e] == k { e += 1 }
            return e
        }
        while i < text.count {
            // Contractions, case-sensitive with the ASCII apostrophe.
            if text[i] == "'" {
                let rest = String(String.UnicodeScalarView(text[(i + 1)..<min(text.count, i + 3)]))
                if let c = ["re", "ve", "ll"].first(where: { rest.hasPrefix($0) }) ?? ["s", "t", "m", "d"].first(where: { rest.hasPrefix($0) }) {
                    pieces.append(text[i..<(i + 1 + c.count)])
                    i += 1 + c.count
                    continue
                }
            }
            // An optional space, then a run of letters, of numbers, or of other characters.
            let spaced = text[i] == " " && i + 1 < text.count && kinds[i + 1] != .space
            let first = spaced ? i + 1 : i
            if kinds[first] != .space {
                let end = run(from: first, of: kinds[first])
                pieces.append(text[i..<end])
                i = end
                continue
            }
            // Whitespace: the run, less its last character when non-whitespace follows.
            let end = run(from: i, of: .space)
            let cut = end < text.count && end - i > 1 ? end - 1 : end
            pieces.append(text[i..<cut])
            i = cut
        }
        return pieces
    }

    // MARK: BPE

    /// GPT-2's byte -> printable character map: printable Latin-1 bytes stand for themselves, the
    /// others are shifted to U+0100 and up.
    static let byteCharacters: [String] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var map = [Int: Int]()
        for b in printable { map[b] = b }
        var n = 0
        for b in 0..<256 where map[b] == nil { map[b] = 256 + n; n += 1; printable.append(b) }
        return (0..<256).map { String(Character(Unicode.Scalar(UInt32(map[$0]!))!)) }
    }()

    /// The ids of one pre-tokenized piece: its bytes as characters, merged by rank (the lowest-ranked
    /// adjacent pair first, leftmost among equals), looked up in the vocabulary.
    func bpe(_ piece: ArraySlice<Unicode.Scalar>) -> [Int32] {
        var symbols = Array(String(String.UnicodeScalarView(piece)).utf8).map { Self.byteCharacters[Int($0)] }
        while symbols.count > 1 {
            var best: (rank: Int, at: Int)? = nil
            for k in 0..<(symbols.count - 1) {
                if let r = ranks[symbols[k] + " " + symbols[k + 1]], best == nil || r < best!.rank { best = (r, k) }
            }
            guard let (_, at) = best else { break }
            symbols[at] += symbols[at + 1]
            symbols.remove(at: at + 1)
        }
        return symbols.compactMap { ids[$0] }
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

/// The parts of tokenizer.json byte-level BPE reads.
private struct TokenizerFile: Decodable {
    struct Model: Decodable {
        var type: String?
        var vocab: [String: Int]
        var merges: [JSONValue]
        /// Every other field, to refuse the ones this reader does not implement.
        var extra: [String: JSONValue]
        init(from decoder: Decoder) throws {
            extra = try decoder.singleValueContainer().decode([String: JSONValue].self)
            let c = try decoder.container(keyedBy: NamedKey.self)
            type = try c.decodeIfPresent(String.self, forKey: NamedKey("type"))
            vocab = try c.decode([String: Int].self, forKey: NamedKey("vocab"))
            merges = try c.decodeIfPresent([JSONValue].self, forKey: NamedKey("merges")) ?? []
        }
    }
    struct Added: Decodable {
        var id: Int
        var content: String
        var lstrip: Bool?, rstrip: Bool?, singleWord: Bool?
        enum CodingKeys: String, CodingKey { case id, content, lstrip, rstrip, singleWord = "single_word" }
    }
    var model: Model
    var normalizer: JSONValue?
    var preTokenizer: JSONValue?
    var postProcessor: JSONValue?
    var addedTokens: [Added]
    enum CodingKeys: String, CodingKey {
        case model, normalizer, preTokenizer = "pre_tokenizer", postProcessor = "post_processor", addedTokens = "added_tokens"
    }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(Model.self, forKey: .model)
        normalizer = try c.decodeIfPresent(JSONValue.self, forKey: .normalizer)
        preTokenizer = try c.decodeIfPresent(JSONValue.self, forKey: .preTokenizer)
        postProcessor = try c.decodeIfPresent(JSONValue.self, forKey: .postProcessor)
        addedTokens = try c.decodeIfPresent([Added].self, forKey: .addedTokens) ?? []
    }
}
