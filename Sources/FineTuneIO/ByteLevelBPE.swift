import FineTuneJSON
import FineTuneKernels
import Foundation

/// Byte-level BPE as Hugging Face `tokenizers` runs it from a tokenizer.json (GPT-2, RoBERTa and
/// the decoders after them): added tokens are cut out of the raw text first (`<mask>` with lstrip
/// takes the spaces before it), the rest is split by the GPT-2 pre-tokenizer pattern, each piece's
/// UTF-8 bytes become the printable characters of GPT-2's byte map, and merges are applied by rank;
/// RobertaProcessing frames the ids (`<s> A </s>`, `<s> A </s></s> B </s>`); with add_prefix_space
/// each stretch of text gets a leading space first. A component of the
/// file that this reader does not implement is an error naming it (not a silently different split).
public final class ByteLevelBPETokenizer: TextTokenizer {
    /// Token strings by id (the byte-mapped form).
    public let tokens: [String]
    let ids: [String: Int32]
    /// Merge ranks: "left right" -> rank (lower merges first).
    let ranks: [String: Int]
    let addedTokens: AddedTokens
    let framing: FramingTemplate
    /// RobertaProcessing's ids.
    public let clsID: Int32, sepID: Int32
    public let source: String
    public let maskToken: String?
    public let specialIDs: [Int32]
    /// ByteLevel's add_prefix_space: every stretch of text between added tokens that does not start
    /// with a space gets one, so a text's first word is split as it would be mid-sentence.
    let addPrefixSpace: Bool
    public var summary: String { "byte-level BPE, \(tokens.count) tokens, \(ranks.count) merges\(addPrefixSpace ? ", prefix space" : "")" }

    /// The tokenizer of a tokenizer.json's bytes; `source` names the file in errors.
    public init(json data: Data, source: String) throws {
        self.source = source
        let file = try TokenizerFile.read(data, source: source)
        func unsupported(_ what: String) -> FineTuneError {
            FineTuneError("\(source): \(what) is not supported (byte-level BPE reads a BPE model, no normalizer, the ByteLevel pre-tokenizer, and RobertaProcessing, a TemplateProcessing or no post-processor)")
        }
        guard let model = file.model, model.type == "BPE" else { throw unsupported("model type \"\(file.model?.type ?? "none")\"") }
        if let n = file.normalizer, n != .null { throw unsupported("the normalizer \(n.object?["type"]?.string ?? "\(n)")") }
        guard let pre = file.preTokenizer?.object, pre["type"]?.string == "ByteLevel" else {
            throw unsupported("the pre-tokenizer \(file.preTokenizer?.object?["type"]?.string ?? "none")")
        }
        if case .bool(true) = pre["add_prefix_space"] ?? .null { addPrefixSpace = true } else { addPrefixSpace = false }
        if case .bool(false) = pre["use_regex"] ?? .null { throw unsupported("ByteLevel's use_regex false") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            // Empty is the same as none (transformers' GPT2Converter writes "").
            if let v = model.fields[key], v != .null, v != .string("") { throw unsupported("the BPE model's \(key)") }
        }
        if case .bool(true) = model.fields["byte_fallback"] ?? .null { throw unsupported("the BPE model's byte_fallback") }
        if case .bool(true) = model.fields["ignore_merges"] ?? .null { throw unsupported("the BPE model's ignore_merges") }
        // RoBERTa frames with <s> ... </s>; a decoder's tokenizer (a ByteLevel or TemplateProcessing
        // post-processor without special tokens, or none) adds nothing.
        let processorType = file.postProcessor?.object?["type"]?.string
        let framing: FramingTemplate
        switch processorType {
        case "RobertaProcessing"?, "TemplateProcessing"?:
            guard let read = try FramingTemplate.read(file.postProcessor, source: source) else { throw unsupported("the post-processor") }
            framing = read
        case "ByteLevel"?, nil: framing = .plain
        default: throw unsupported("the post-processor \(processorType ?? "none")")
        }
        self.framing = framing
        tokens = try model.vocabulary(source: source)
        ids = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($0.element, Int32($0.offset)) })
        var ranks: [String: Int] = [:]
        for (rank, merge) in (model.fields["merges"]?.array ?? []).enumerated() {
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
        // No normalizer: every added token matches the raw text.
        addedTokens = file.added
        // Unframed (a decoder): the end-of-text token stands for both ends of a corpus window.
        let endOfText = file.addedTokens.first { ["<|endoftext|>", "</s>", "<eos>"].contains($0.content) }.map { Int32($0.id) } ?? 0
        clsID = framing.singleEnds?.first ?? endOfText; sepID = framing.singleEnds?.last ?? endOfText
        maskToken = file.addedTokens.first { $0.content == "<mask>" }?.content
        specialIDs = file.addedTokens.filter { $0.special ?? false }.map { Int32($0.id) }
        continuesWord = tokens.map { !$0.hasPrefix(Self.byteCharacters[32]) }
    }

    public func id(of token: String) -> Int32? { ids[token] }
    /// A token continues a word unless it starts with the byte-mapped space ("Ġ").
    public let continuesWord: [Bool]

    /// The ids of `text` without the framing tokens.
    public func tokenize(_ text: String) -> [Int32] {
        var out: [Int32] = []
        for segment in addedTokens.split(Array(text.unicodeScalars)) {
            switch segment {
            case .added(let id): out.append(id)
            case .text(var scalars):
                if addPrefixSpace && scalars.first != nil && scalars.first != " " { scalars.insert(" ", at: 0) }
                for piece in Self.preTokenize(scalars) { out += bpe(piece) }
            }
        }
        return out
    }

    /// `<s> A </s>` or `<s> A </s></s> B </s>`, truncated longest-first to `maxLength` ids; type ids
    /// are all 0 (RoBERTa has one token type).
    public func encode(_ text: String, pair: String? = nil, maxLength: Int? = nil) -> (ids: [Int32], typeIDs: [Int32]) {
        framing.frame(tokenize(text), pair.map(tokenize), maxLength: maxLength)
    }

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
