import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// WordPiece as Hugging Face `tokenizers` runs it for BERT, DistilBERT and MPNet (BertNormalizer +
/// BertPreTokenizer + WordPiece + the post-processor's framing):
///
/// 1. clean-up: drop NUL, U+FFFD and control/format/unassigned/private-use characters (tab, newline
///    and carriage return count as whitespace); every whitespace character becomes a space;
/// 2. a space on each side of every CJK ideograph;
/// 3. strip accents (NFD, drop non-spacing marks; by default when lower-casing) and lower-case,
///    character by character;
/// 4. split on whitespace, and every punctuation character (Unicode P*, or ASCII punctuation) alone;
/// 5. each word: the unknown token if over 100 characters, else greedy longest-match pieces,
///    continuations prefixed with "##"; a word that cannot be covered becomes the unknown token.
/// Vocabulary look-ups compare exact Unicode scalar sequences (as Rust compares bytes), not
/// Swift's canonically-equivalent strings. Before all that, the added tokens written in the text
/// are cut out as single tokens (AddedTokens: [MASK], or MPNet's <mask> with the spaces before it).
/// Framing: BERT's [CLS] A [SEP] B [SEP] (types 0 then 1), MPNet's <s> A </s></s> B </s>, or the
/// template tokenizer.json states. A folder with only vocab.txt is BERT's.
public final class WordPieceTokenizer: TextTokenizer {
    public let lowercase: Bool
    public let stripAccents: Bool
    public let maxInputCharsPerWord: Int
    private let vocabulary: [[UInt8]: Int32]
    public let tokens: [String]
    public let clsID: Int32, sepID: Int32, unkID: Int32
    public let maskToken: String?
    public let specialIDs: [Int32]
    public let continuesWord: [Bool]
    let framing: FramingTemplate
    /// Added tokens matched in the raw text, and those matched after normalisation.
    private let rawAdded: AddedTokens, normalizedAdded: AddedTokens
    public var summary: String { "WordPiece, \(tokens.count) tokens, \(lowercase ? "lowercase" : "cased")" }

    /// BERT's tokenizer of a vocabulary (vocab.txt): [CLS], [SEP] and [UNK] must be in it; the
    /// added tokens are BERT's five specials.
    public convenience init(tokens: [String], lowercase: Bool, source: String = "vocabulary") throws {
        let index = Dictionary(tokens.enumerated().map { ($0.element, Int32($0.offset)) }, uniquingKeysWith: { a, _ in a })
        func special(_ name: String) throws -> Int32 {
            guard let id = index[name] else { throw FineTuneError("\(source): no \(name) token in the vocabulary") }
            return id
        }
        let framing = FramingTemplate.bert(cls: try special("[CLS]"), sep: try special("[SEP]"))
        try self.init(tokens: tokens, lowercase: lowercase, stripAccents: lowercase, unkToken: "[UNK]", framing: framing,
                      added: WordPieceTokenizer.bertSpecials(index), source: source)
    }

    init(tokens: [String], lowercase: Bool, stripAccents: Bool, unkToken: String, continuation: String = "##", maxInputCharsPerWord: Int = 100,
         framing: FramingTemplate, added: AddedTokens, source: String) throws {
        self.tokens = tokens
        self.lowercase = lowercase
        self.stripAccents = stripAccents
        self.maxInputCharsPerWord = maxInputCharsPerWord
        var vocabulary: [[UInt8]: Int32] = [:]
        for (i, t) in tokens.enumerated() where vocabulary[Array(t.utf8)] == nil { vocabulary[Array(t.utf8)] = Int32(i) }
        self.vocabulary = vocabulary
        guard let unk = vocabulary[Array(unkToken.utf8)] else { throw FineTuneError("\(source): the unknown token \(unkToken) is not in the vocabulary") }
        unkID = unk
        guard let ends = framing.singleEnds else { throw FineTuneError("\(source): the post-processor frames a text with no special tokens") }
        clsID = ends.first; sepID = ends.last
        self.framing = framing
        rawAdded = added.pass(normalized: false)
        normalizedAdded = added.pass(normalized: true)
        let names = Set(added.tokens.map { String(String.UnicodeScalarView($0.content)) })
        maskToken = ["[MASK]", "<mask>"].first { names.contains($0) && vocabulary[Array($0.utf8)] != nil }
        specialIDs = Array(Set(added.tokens.map(\.id) + [clsID, sepID, unk])).sorted()
        continuesWord = tokens.map { $0.hasPrefix(continuation) }
        prefix = Array(continuation.utf8)
        var fast = ByteVocabulary(capacity: tokens.count * 2)
        for (i, t) in tokens.enumerated() {
            let bytes = Array(t.utf8)
            fast.insert(bytes, flag: 0, id: Int32(i))
            if bytes.starts(with: prefix) { fast.insert(Array(bytes.dropFirst(prefix.count)), flag: 1, id: Int32(i)) }
        }
        fastVocabulary = fast
        var firstBytes = [Bool](repeating: false, count: 256)
        for token in added.tokens {
            guard let first = token.content.first, first.isASCII else { continue }
            for variant in [first.value, first.properties.lowercaseMapping.unicodeScalars.first!.value,
                            first.properties.uppercaseMapping.unicodeScalars.first!.value] where variant < 128 {
                firstBytes[Int(variant)] = true
            }
        }
        addedFirstBytes = firstBytes
    }
    private var prefix: [UInt8] = Array("##".utf8)
    /// The vocabulary for the ASCII path: word-initial pieces (flag 0) and continuations (flag 1).
    private let fastVocabulary: ByteVocabulary
    /// Bytes an added token starts with: text holding one takes the general path.
    private let addedFirstBytes: [Bool]

    /// The id of a token of the vocabulary, if it has it.
    public func id(of token: String) -> Int32? { vocabulary[Array(token.utf8)] }

    /// The files a tokenizer is read from, carried into checkpoints and exports (RoBERTa's vocab.json
    /// and merges.txt too: transformers' slow tokenizer reads them).
    public static let fileNames = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]

    /// The tokenizer of a model folder's files (`fileNames`, as bytes; `source` names the folder in
    /// errors): tokenizer.json when the folder has it (WordPiece or byte-level BPE, its components
    /// as it states them), else BERT's WordPiece from vocab.txt, cased as tokenizer_config.json's
    /// do_lower_case says (default: lower-case, as bert-base-uncased).
    public static func load(files: [String: Data], source: String) throws -> TextTokenizer {
        if let data = files["tokenizer.json"] {
            let path = "\(source)/tokenizer.json"
            let file = try TokenizerFile.read(data, source: path)
            switch file.model?.type {
            case "BPE"?: return try ByteLevelBPETokenizer(json: data, source: path)
            case "WordPiece"?:
                let tokenizer = try WordPieceTokenizer(file: file, source: path)
                try requireSameVocabulary(tokenizer.tokens, vocabTxt: files["vocab.txt"], source: source)
                return tokenizer
            case let other:
                throw FineTuneError("\(path): the tokenizer model \(other ?? "none") is not supported (WordPiece and byte-level BPE are)")
            }
        }
        var lowercase: Bool? = nil
        if let data = files["tokenizer_config.json"] {
            do { lowercase = try decodeJSON(TokenizerConfigJSON.self, from: data).doLowerCase } catch {
                throw FineTuneError("\(source)/tokenizer_config.json: \(userMessage(for: error))")
            }
        }
        guard let data = files["vocab.txt"] else {
            if files["merges.txt"] != nil {
                throw FineTuneError("\(source): vocab.json and merges.txt but no tokenizer.json: byte-level BPE is read from tokenizer.json " +
                                    "(transformers writes one: AutoTokenizer.from_pretrained(folder).save_pretrained(folder))")
            }
            throw FineTuneError("\(source): no vocab.txt or tokenizer.json (a text model needs its vocabulary)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw FineTuneError("\(source)/vocab.txt: not UTF-8 text") }
        return try WordPieceTokenizer(tokens: vocabularyLines(text), lowercase: lowercase ?? true, source: "\(source)/vocab.txt")
    }

    /// A WordPiece tokenizer.json: BertNormalizer, BertPreTokenizer, WordPiece, a post-processor.
    convenience init(file: TokenizerFile, source: String) throws {
        func unsupported(_ what: String) -> FineTuneError {
            FineTuneError("\(source): \(what) is not supported (WordPiece reads BertNormalizer, BertPreTokenizer and a Bert, Roberta or Template post-processor)")
        }
        let normalizer = file.normalizer?.object ?? [:]
        guard file.normalizer == nil || file.normalizer == .null || normalizer["type"]?.string == "BertNormalizer" else {
            throw unsupported("the normalizer \(normalizer["type"]?.string ?? "?")")
        }
        for key in ["clean_text", "handle_chinese_chars"] where normalizer[key] == .bool(false) { throw unsupported("BertNormalizer's \(key) false") }
        guard file.preTokenizer == nil || file.preTokenizer == .null || file.preTokenizer?.object?["type"]?.string == "BertPreTokenizer" else {
            throw unsupported("the pre-tokenizer \(file.preTokenizer?.object?["type"]?.string ?? "?")")
        }
        let model = file.model!
        let tokens = try model.vocabulary(source: source)
        func flag(_ key: String) -> Bool? { if case .bool(let b)? = normalizer[key] { return b }; return nil }
        let lowercase = flag("lowercase") ?? true
        // strip_accents null: as lower-casing.
        let stripAccents = flag("strip_accents") ?? lowercase
        let index = Dictionary(tokens.enumerated().map { ($0.element, Int32($0.offset)) }, uniquingKeysWith: { a, _ in a })
        let framing: FramingTemplate
        if let read = try FramingTemplate.read(file.postProcessor, source: source) {
            framing = read
        } else {
            guard let cls = index["[CLS]"], let sep = index["[SEP]"] else { throw FineTuneError("\(source): no post-processor and no [CLS] and [SEP] tokens") }
            framing = .bert(cls: cls, sep: sep)
        }
        try self.init(tokens: tokens, lowercase: lowercase, stripAccents: stripAccents, unkToken: model.fields["unk_token"]?.string ?? "[UNK]",
                      continuation: model.fields["continuing_subword_prefix"]?.string ?? "##",
                      maxInputCharsPerWord: Int(model.fields["max_input_chars_per_word"]?.number ?? 100),
                      framing: framing, added: file.addedTokens.isEmpty ? Self.bertSpecials(index) : file.added, source: source)
    }

    /// BERT's five special tokens, those the vocabulary has (a folder that lists no added tokens).
    static func bertSpecials(_ index: [String: Int32]) -> AddedTokens {
        AddedTokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { name in
            index[name].map { AddedTokens.Token(content: Array(name.unicodeScalars), id: $0, lstrip: false, rstrip: false, singleWord: false, normalized: false) }
        })
    }

    /// transformers tokenises with tokenizer.json when a folder has it: so does this tool, and a
    /// vocab.txt beside it must say the same (else the folder tokenises two ways).
    static func requireSameVocabulary(_ fromJSON: [String], vocabTxt: Data?, source: String) throws {
        guard let vocabTxt, let text = String(data: vocabTxt, encoding: .utf8) else { return }
        let listed = vocabularyLines(text)
        guard listed != fromJSON else { return }
        let id = zip(listed, fromJSON).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(listed.count, fromJSON.count)
        let say = { (list: [String]) in id < list.count ? "\"\(list[id])\"" : "nothing (it ends there)" }
        throw FineTuneError("\(source): vocab.txt and tokenizer.json disagree (token id \(id): vocab.txt has \(say(listed)), " +
                            "tokenizer.json \(say(fromJSON)); \(listed.count) and \(fromJSON.count) tokens): transformers would tokenise " +
                            "with tokenizer.json; fix or remove the one that is wrong")
    }

    /// vocab.txt's tokens, one a line (a final newline and Windows line ends dropped).
    static func vocabularyLines(_ text: String) -> [String] {
        var list = text.components(separatedBy: "\n")
        if list.last == "" { list.removeLast() }
        return list.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
    }

    /// The tokenizer of a model folder on disk.
    public static func load(folder: String) throws -> TextTokenizer {
        var files: [String: Data] = [:]
        for name in fileNames { files[name] = FileManager.default.contents(atPath: "\(folder)/\(name)") }
        return try load(files: files, source: folder)
    }

    // MARK: Character classes (as the Rust `tokenizers` crate defines them)

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .unassigned, .privateUse, .surrogate: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII {
            let v = s.value
            if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isChineseCharacter(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }

    // MARK: Pipeline

    /// Steps 1-3: the normalised text as Unicode scalars.
    func normalize(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            if s.value == 0 || s.value == 0xFFFD || WordPieceTokenizer.isControl(s) { continue }
            if WordPieceTokenizer.isWhitespace(s) { out.append(" "); continue }
            if WordPieceTokenizer.isChineseCharacter(s) { out.append(" "); out.append(s); out.append(" "); continue }
            out.append(s)
        }
        guard lowercase || stripAccents else { return out }
        // Strip accents: canonical decomposition, then drop non-spacing marks; then lower-case each scalar.
        var stripped: [Unicode.Scalar] = []
        stripped.reserveCapacity(out.count)
        for s in out {
            if s.isASCII {
                stripped.append(lowercase && s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s)
                continue
            }
            let parts = stripAccents ? String(s).decomposedStringWithCanonicalMapping.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
                                     : [s]
            for d in parts {
                if lowercase { stripped.append(contentsOf: d.properties.lowercaseMapping.unicodeScalars) } else { stripped.append(d) }
            }
        }
        return stripped
    }

    /// Step 4: words of the normalised text.
    func preTokenize(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for (i, s) in scalars.enumerated() {
            if WordPieceTokenizer.isWhitespace(s) {
                if start < i { words.append(scalars[start..<i]) }
                start = i + 1
            } else if WordPieceTokenizer.isPunctuation(s) {
                if start < i { words.append(scalars[start..<i]) }
                words.append(scalars[i...i])
                start = i + 1
            }
        }
        if start < scalars.count { words.append(scalars[start...]) }
        return words
    }

    /// Step 5 for one word.
    func wordPieces(_ word: ArraySlice<Unicode.Scalar>, into ids: inout [Int32]) {
        if word.count > maxInputCharsPerWord { ids.append(unkID); return }
        let utf8 = word.map { Array(String($0).utf8) }
        var pieces: [Int32] = []
        var start = word.startIndex
        while start < word.endIndex {
            var end = word.endIndex
            var found: Int32? = nil
            while start < end {
                var key: [UInt8] = start > word.startIndex ? prefix : []
                for k in start..<end { key.append(contentsOf: utf8[k - word.startIndex]) }
                if let id = vocabulary[key] { found = id; break }
                end -= 1
            }
            guard let id = found else { ids.append(unkID); return }
            pieces.append(id)
            start = end
        }
        ids.append(contentsOf: pieces)
    }

    /// Token ids of a text, without framing: added tokens cut out of the raw text, the rest
    /// normalised, then cut at the added tokens that match normalised text, then split into words
    /// and pieces.
    public func tokenize(_ text: String) -> [Int32] {
        if let ids = text.utf8.withContiguousStorageIfAvailable({ tokenizeASCII($0) }), let ids { return ids }
        return tokenizeGeneral(text)
    }

    public func tokenize(utf8: UnsafeBufferPointer<UInt8>) -> [Int32] {
        tokenizeASCII(utf8) ?? tokenizeGeneral(String(decoding: utf8, as: UTF8.self))
    }

    /// The pipeline on Unicode scalars, for any text.
    func tokenizeGeneral(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for segment in rawAdded.split(Array(text.unicodeScalars)) {
            switch segment {
            case .added(let id): ids.append(id)
            case .text(let raw):
                for part in normalizedAdded.split(normalize(String(String.UnicodeScalarView(raw)))) {
                    switch part {
                    case .added(let id): ids.append(id)
                    case .text(let normalized): for word in preTokenize(normalized) { wordPieces(word, into: &ids) }
                    }
                }
            }
        }
        return ids
    }

    /// The same pipeline on the bytes of ASCII text that holds no added token, without building
    /// strings or scalar arrays (5-10x faster; most corpus lines take it): clean-up and
    /// lower-casing byte by byte, words split at spaces and ASCII punctuation, pieces looked up
    /// in place. Nil when the text is not such (the general path then runs).
    func tokenizeASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> [Int32]? {
        for b in bytes where b >= 0x80 || addedFirstBytes[Int(b)] { return nil }
        var ids: [Int32] = []
        ids.reserveCapacity(bytes.count / 3 + 1)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(bytes.count, 1)) { buffer in
            var n = 0
            for b in bytes {
                if b == 9 || b == 10 || b == 13 || b == 32 { buffer[n] = 32; n += 1 }       // whitespace
                else if b < 32 || b == 127 { continue }                                     // control characters
                else { buffer[n] = lowercase && b >= 65 && b <= 90 ? b + 32 : b; n += 1 }
            }
            let normalized = UnsafeBufferPointer(rebasing: buffer[0..<n])
            var i = 0
            while i < n {
                let b = normalized[i]
                if b == 32 { i += 1; continue }
                var j = i + 1
                if !Self.isASCIIPunctuation(b) {
                    while j < n && normalized[j] != 32 && !Self.isASCIIPunctuation(normalized[j]) { j += 1 }
                }
                asciiWordPieces(normalized, i..<j, into: &ids)
                i = j
            }
        }
        return ids
    }

    @inline(__always)
    static func isASCIIPunctuation(_ b: UInt8) -> Bool {
        (33...47).contains(b) || (58...64).contains(b) || (91...96).contains(b) || (123...126).contains(b)
    }

    /// Step 5 for one word of the ASCII path (a character is a byte).
    private func asciiWordPieces(_ text: UnsafeBufferPointer<UInt8>, _ word: Range<Int>, into ids: inout [Int32]) {
        if word.count > maxInputCharsPerWord { ids.append(unkID); return }
        let before = ids.count
        var start = word.lowerBound
        while start < word.upperBound {
            var end = word.upperBound
            var found: Int32? = nil
            while start < end {
                if let id = fastVocabulary.lookup(UnsafeBufferPointer(rebasing: text[start..<end]), flag: start > word.lowerBound ? 1 : 0) {
                    found = id; break
                }
                end -= 1
            }
            guard let id = found else { ids.removeSubrange(before...); ids.append(unkID); return }
            ids.append(id)
            start = end
        }
    }

    /// The framed ids and token types of a text or a pair, truncated longest-first to `maxLength`
    /// tokens in all (as `tokenizers` does).
    public func encode(_ text: String, pair: String? = nil, maxLength: Int? = nil) -> (ids: [Int32], typeIDs: [Int32]) {
        framing.frame(tokenize(text), pair.map(tokenize), maxLength: maxLength)
    }
}

private struct TokenizerConfigJSON: Decodable {
    var doLowerCase: Bool?
    enum CodingKeys: String, CodingKey { case doLowerCase = "do_lower_case" }
}
