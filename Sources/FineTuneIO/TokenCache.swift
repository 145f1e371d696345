import Crypto
import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// A data file tokenized once into binary token files with an offsets index, read back by memory
/// map (as Megatron-LM's and llm.c's token files, or the Arrow files of Hugging Face `datasets`).
///
/// An entry is a folder `<cache>/<file name>.<key>` holding one part per rank that built it:
/// `part-<r>.tokens` (uint16 when the vocabulary fits, else uint32), `part-<r>.offsets` (uint64,
/// examples + 1, from 0), `part-<r>.lines` (uint64 source line per example) and, for labelled
/// examples, `part-<r>.types` (uint8 token type per token), `part-<r>.label-kinds` (uint8: 0 none,
/// 1 name, 2 number) and `part-<r>.label-values` (float64: the number, or the name's index in the
/// part's `labelNames`). `meta.json`, written last, states the key and every file's size: an entry
/// is read only when it matches the key and every size, and it only ever appears complete (built
/// under another name and renamed).
public enum TokenCache {
    public static let formatVersion = 1

    /// How a text is cut into examples.
    public enum Layout: String, Codable, Sendable {
        /// Masked-language modelling: each text in windows of maxLength - 2 tokens with [CLS] and [SEP]; labels not read.
        case windows
        /// One example per record, truncated to maxLength, with its raw label.
        case examples
    }

    /// What is tokenized and how.
    public struct Request {
        public let path: String
        public let layout: Layout
        public let maxLength: Int
        public let tokenizer: TextTokenizer
        /// SHA-256 of the tokenizer's files.
        public let tokenizerDigest: String
        public init(path: String, layout: Layout, maxLength: Int, tokenizer: TextTokenizer, tokenizerDigest: String) {
            self.path = path; self.layout = layout; self.maxLength = maxLength; self.tokenizer = tokenizer; self.tokenizerDigest = tokenizerDigest
        }
        public var isCSV: Bool { path.lowercased().hasSuffix(".csv") }
        public var isPlainText: Bool { TextDataset.isPlainText(path: path) }
        var tokenWidth: Int { tokenizer.tokens.count <= 1 << 16 ? 2 : 4 }
    }

    /// The identity of an entry: the file (size, modification time, SHA-256 of its first and last
    /// MiB), the tokenizer, the layout and --max-length.
    public struct Key: Codable, Equatable, Sendable {
        public var format: Int
        public var fileSize: Int
        public var modified: String
        public var headSHA256: String
        public var tailSHA256: String
        public var tokenizerSHA256: String
        public var layout: Layout
        public var maxLength: Int
        public var tokenWidth: Int

        public var digest: String {
            let text = "\(format)|\(fileSize)|\(modified)|\(headSHA256)|\(tailSHA256)|\(tokenizerSHA256)|\(layout.rawValue)|\(maxLength)|\(tokenWidth)"
            return Digest.sha256(Data(text.utf8))
        }
    }

    public static func key(_ request: Request) throws -> Key {
        let path = request.path
        var info = stat()
        guard stat(path, &info) == 0 else { throw FineTuneError("\(path): cannot read the file (missing or unreadable)") }
        guard (info.st_mode & S_IFMT) != S_IFDIR else { throw FineTuneError("\(path): is a folder, not a data file") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FineTuneError("\(path): not a regular file (a pipe or device cannot be tokenized into a cache: pass --no-token-cache, or write it to a file)")
        }
        let file = try MappedFile(path: path)
        let mib = 1 << 20
        let head = Digest.sha256(Data(file.bytes[0..<min(mib, file.count)]))
        let tail = Digest.sha256(Data(file.bytes[max(0, file.count - mib)..<file.count]))
        return Key(format: formatVersion, fileSize: file.count, modified: "\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)",
                   headSHA256: head, tailSHA256: tail, tokenizerSHA256: request.tokenizerDigest, layout: request.layout,
                   maxLength: request.maxLength, tokenWidth: request.tokenWidth)
    }

    /// The entry's folder in `cacheDir`.
    public static func entryPath(cacheDir: String, request: Request, key: Key) -> String {
        "\(cacheDir)/\((request.path as NSString).lastPathComponent).\(key.digest.prefix(16))"
    }

    // MARK: The entry's description

    public struct PartMeta: Codable, Sendable {
        public var examples: Int
        public var tokens: Int
        /// Label names of the part, indexed by label-values.
        public var labelNames: [String]
        /// Some record had a label (a corpus's labels are not read: the run says so).
        public var sawLabels: Bool
    }

    public struct Meta: Codable, Sendable {
        public var key: Key
        public var source: String
        public var parts: [PartMeta]
        public var buildSeconds: Double
        public var ranks: Int
        public var examples: Int { parts.reduce(0) { $0 + $1.examples } }
        public var tokens: Int { parts.reduce(0) { $0 + $1.tokens } }
    }

    /// The files of part `r` and their sizes in bytes.
    static func partFiles(_ r: Int, _ part: PartMeta, layout: Layout, tokenWidth: Int) -> [(String, Int)] {
        var files = [("part-\(r).tokens", part.tokens * tokenWidth), ("part-\(r).offsets", (part.examples + 1) * 8),
                     ("part-\(r).lines", part.examples * 8)]
        if layout == .examples {
            files += [("part-\(r).types", part.tokens), ("part-\(r).label-kinds", part.examples), ("part-\(r).label-values", part.examples * 8)]
        }
        return files
    }

    public enum Status {
        case ready(Meta)
        case absent
        /// Present but not usable: the reason, for the rebuild notice.
        case damaged(String)
    }

    /// Whether `entry` holds a complete build for `key` (meta.json readable, the same key, every
    /// file of the size it states, the offsets' ends as stated). Cheap: the data is not read.
    public static func status(entry: String, key: Key) -> Status {
        let fm = FileManager.default
        guard fm.fileExists(atPath: entry) else { return .absent }
        guard let data = fm.contents(atPath: "\(entry)/meta.json") else { return .damaged("\(entry)/meta.json is missing") }
        let meta: Meta
        do { meta = try decodeJSON(Meta.self, from: data) } catch { return .damaged("\(entry)/meta.json: \(userMessage(for: error))") }
        guard meta.key == key else { return .damaged("\(entry): built for another version of the file or another tokenizer") }
        for (r, part) in meta.parts.enumerated() {
            for (name, size) in partFiles(r, part, layout: key.layout, tokenWidth: key.tokenWidth) {
                let actual = (try? fm.attributesOfItem(atPath: "\(entry)/\(name)")[.size] as? Int) ?? nil
                guard let actual else { return .damaged("\(entry)/\(name) is missing") }
                if actual != size { return .damaged("\(entry)/\(name) holds \(actual) bytes, meta.json says \(size) (truncated or overwritten)") }
            }
            guard let offsets = try? MappedFile(path: "\(entry)/part-\(r).offsets") else { return .damaged("\(entry)/part-\(r).offsets cannot be read") }
            if offsets.load(UInt64.self, at: 0) != 0 || offsets.load(UInt64.self, at: part.examples) != UInt64(part.tokens) {
                return .damaged("\(entry)/part-\(r).offsets does not end at the part's \(part.tokens) tokens")
            }
        }
        return .ready(meta)
    }

    // MARK: Building

    /// The byte range of the source part `part` of `parts` reads: cut at line starts, so every line
    /// is in exactly one part.
    public static func sourceRange(of file: MappedFile, part: Int, parts: Int) -> Range<Int> {
        func boundary(_ k: Int) -> Int {
            if k == 0 { return 0 }
            if k == parts { return file.count }
            var p = Int((Int64(file.count) * Int64(k)) / Int64(parts))
            while p > 0 && p < file.count && file.bytes[p - 1] != UInt8(ascii: "\n") { p += 1 }
            return p
        }
        return boundary(part)..<boundary(part + 1)
    }

    /// Line breaks in `range` (the next part's first line number is the sum of those before it, + 1).
    public static func lineBreaks(in file: MappedFile, range: Range<Int>) -> Int {
        guard !range.isEmpty else { return 0 }
        var count = 0
        var p = file.base! + range.lowerBound
        let end = file.base! + range.upperBound
        while p < end, let hit = memchr(p, Int32(UInt8(ascii: "\n")), end - p) {
            count += 1
            p = UnsafeRawPointer(hit) + 1
        }
        return count
    }

    /// Tokenizes the lines of `range` (the first numbered `firstLine`) into part `part` of the
    /// folder `building`: plain text lines (blank ones skipped) or JSON Lines records. A CSV file is
    /// read whole by part 0 (a quoted field may hold line breaks, so it cannot be cut at lines).
    public static func buildPart(_ request: Request, part: Int, range: Range<Int>, firstLine: Int, in building: String) throws -> PartMeta {
        let path = request.path
        let writer = try PartWriter(folder: building, part: part, layout: request.layout, tokenWidth: request.tokenWidth)
        var sawLabels = false
        var names: [String: Int] = [:]
        var nameList: [String] = []
        let budget = request.maxLength - 2
        guard budget > 0 else { throw FineTuneError("--max-length \(request.maxLength) leaves no room for text between [CLS] and [SEP] (at least 3)") }
        let tokenizer = request.tokenizer

        func add(text: String?, utf8 bytes: UnsafeBufferPointer<UInt8>?, pair: String?, label: LabelValue?, line: Int) throws {
            if label != nil { sawLabels = true }
            switch request.layout {
            case .windows:
                // A record's second text joins the first (as TextDataset.corpus reads it).
                let ids = pair.map { tokenizer.tokenize(text! + " " + $0) } ?? bytes.map { tokenizer.tokenize(utf8: $0) } ?? tokenizer.tokenize(text!)
                guard !ids.isEmpty else {
                    throw FineTuneError("\(path):\(line): no tokens after tokenisation (the line holds only spaces or control characters)")
                }
                for start in stride(from: 0, to: ids.count, by: budget) {
                    try writer.append(window: ids[start..<min(start + budget, ids.count)], cls: tokenizer.clsID, sep: tokenizer.sepID, line: line)
                }
            case .examples:
                let text = text ?? String(decoding: bytes!, as: UTF8.self)
                let (ids, types) = tokenizer.encode(text, pair: pair, maxLength: request.maxLength)
                var kind: UInt8 = 0, value = 0.0
                switch label {
                case .name(let n)?:
                    kind = 1
                    if let index = names[n] { value = Double(index) } else { names[n] = nameList.count; value = Double(nameList.count); nameList.append(n) }
                case .number(let v)?: kind = 2; value = v
                case nil: break
                }
                try writer.append(ids: ids, types: types, labelKind: kind, labelValue: value, line: line)
            }
        }

        let file = try MappedFile(path: path)
        if request.isCSV {
            if part == 0 {
                for record in try TextDataset.readRecords(path: path) {
                    try add(text: record.text, utf8: nil, pair: record.pair, label: record.label, line: record.line)
                }
            }
        } else {
            var start = range.lowerBound
            var line = firstLine
            var first = part == 0
            if start == 0 && file.count >= 3 && file.bytes[0] == 0xEF && file.bytes[1] == 0xBB && file.bytes[2] == 0xBF { start = 3 }
            while start < range.upperBound {
                let end = file.bytes[start..<range.upperBound].firstIndex(of: UInt8(ascii: "\n")) ?? range.upperBound
                let bytes = UnsafeBufferPointer(rebasing: file.bytes[start..<end])
                let ascii = !bytes.contains { $0 >= 0x80 }
                if !ascii && String(validating: bytes, as: UTF8.self) == nil { throw FineTuneError("\(path):\(line): not UTF-8 text") }
                if request.isPlainText && request.layout == .windows {
                    let blank = ascii ? bytes.allSatisfy { $0 == 32 || $0 == 9 }
                                      : String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces).isEmpty
                    if !blank {
                        if ascii { try add(text: nil, utf8: bytes, pair: nil, label: nil, line: line) }
                        else { try add(text: String(decoding: bytes, as: UTF8.self), utf8: nil, pair: nil, label: nil, line: line) }
                    }
                } else if let object = try JSONLines.object(of: String(decoding: bytes, as: UTF8.self), number: line, path: path, first: first) {
                    first = false
                    let record = try TextDataset.record(object, path: path, line: line)
                    try add(text: record.text, utf8: nil, pair: record.pair, label: record.label, line: line)
                }
                line += 1
                start = end + 1
            }
        }
        try writer.finish()
        let meta = PartMeta(examples: writer.examples, tokens: writer.tokenCount, labelNames: nameList, sawLabels: sawLabels)
        try AtomicFiles.writeAndSync(try prettyJSON(meta), to: "\(building)/part-\(part).json")
        return meta
    }

    /// Writes meta.json (after the parts' files, each already synced) and renames `building` to
    /// `entry`, replacing a damaged entry of that name.
    public static func seal(building: String, entry: String, key: Key, source: String, parts: Int, seconds: Double, ranks: Int) throws -> Meta {
        var metas: [PartMeta] = []
        for r in 0..<parts {
            guard let data = FileManager.default.contents(atPath: "\(building)/part-\(r).json") else {
                throw FineTuneError("\(building)/part-\(r).json is missing: the rank that built part \(r) does not see this folder " +
                                    "(the token cache must be on a filesystem every rank sees, or built on each host with `finetune-dist tokenize`)")
            }
            metas.append(try decodeJSON(PartMeta.self, from: data))
        }
        let meta = Meta(key: key, source: source, parts: metas, buildSeconds: seconds, ranks: ranks)
        if meta.examples == 0 { throw FineTuneError(key.layout == .windows ? "\(source): no text (an empty corpus)" : "\(source): no examples") }
        try AtomicFiles.writeAndSync(try prettyJSON(meta), to: "\(building)/meta.json")
        try AtomicFiles.syncDirectory(building)
        let fm = FileManager.default
        if fm.fileExists(atPath: entry) {
            let aside = "\(entry).old-\(getpid())"
            guard rename(entry, aside) == 0 else { throw FineTuneError("\(entry): cannot move the old entry aside: \(String(cString: strerror(errno)))") }
            try? fm.removeItem(atPath: aside)
        }
        guard rename(building, entry) == 0 else { throw FineTuneError("\(entry): cannot rename \(building) into place: \(String(cString: strerror(errno)))") }
        try AtomicFiles.syncDirectory(AtomicFiles.parentFolder(of: entry))
        return meta
    }

    /// Removes unfinished builds of `entry` (a killed run's) untouched for `olderThan` seconds.
    public static func removeAbandonedBuilds(of entry: String, olderThan: TimeInterval = 600) {
        let fm = FileManager.default
        let folder = AtomicFiles.parentFolder(of: entry), name = (entry as NSString).lastPathComponent
        for item in (try? fm.contentsOfDirectory(atPath: folder)) ?? [] where item.hasPrefix(name + ".building-") {
            let path = "\(folder)/\(item)"
            if let date = (try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date, Date().timeIntervalSince(date) > olderThan {
                try? fm.removeItem(atPath: path)
            }
        }
    }
}

/// Buffered writer of one part's files.
final class PartWriter {
    private let tokens: BufferedFile, offsets: BufferedFile, lines: BufferedFile
    private let types: BufferedFile?, labelKinds: BufferedFile?, labelValues: BufferedFile?
    private let tokenWidth: Int
    private(set) var examples = 0
    private(set) var tokenCount = 0

    init(folder: String, part: Int, layout: TokenCache.Layout, tokenWidth: Int) throws {
        func open(_ suffix: String) throws -> BufferedFile { try BufferedFile(path: "\(folder)/part-\(part).\(suffix)") }
        self.tokens = try open("tokens"); offsets = try open("offsets"); lines = try open("lines")
        let labelled = layout == .examples
        types = labelled ? try open("types") : nil
        labelKinds = labelled ? try open("label-kinds") : nil
        labelValues = labelled ? try open("label-values") : nil
        self.tokenWidth = tokenWidth
        offsets.append(UInt64(0))
    }

    private func appendToken(_ id: Int32) {
        if tokenWidth == 2 { tokens.append(UInt16(truncatingIfNeeded: id)) } else { tokens.append(UInt32(bitPattern: id)) }
    }

    func append(window: ArraySlice<Int32>, cls: Int32, sep: Int32, line: Int) throws {
        appendToken(cls)
        for id in window { appendToken(id) }
        appendToken(sep)
        tokenCount += window.count + 2
        try endExample(line: line)
    }

    func append(ids: [Int32], types typeIDs: [Int32], labelKind: UInt8, labelValue: Double, line: Int) throws {
        for id in ids { appendToken(id) }
        for t in typeIDs { types!.append(UInt8(truncatingIfNeeded: t)) }
        labelKinds!.append(labelKind)
        labelValues!.append(labelValue)
        tokenCount += ids.count
        try endExample(line: line)
    }

    private func endExample(line: Int) throws {
        examples += 1
        offsets.append(UInt64(tokenCount))
        lines.append(UInt64(line))
        if tokens.pending > 1 << 20 { try flushAll() }
    }

    private var files: [BufferedFile] { [tokens, offsets, lines] + [types, labelKinds, labelValues].compactMap { $0 } }

    private func flushAll() throws { for file in files { try file.flush() } }

    func finish() throws { for file in files { try file.close() } }
}

/// Appends raw values to a file through a buffer; `close` flushes and fsyncs.
final class BufferedFile {
    let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    var pending: Int { buffer.count }

    init(path: String) throws {
        self.path = path
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FineTuneError("\(path): cannot create: \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(1 << 20 + 4096)
    }
    deinit { if fd >= 0 { Glibc.close(fd) } }

    @inline(__always)
    func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }
    func append(_ value: Double) { append(value.bitPattern) }

    func flush() throws {
        try buffer.withUnsafeBytes { try AtomicFiles.writeAll($0, to: fd, path: path) }
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        try flush()
        guard fsync(fd) == 0 else { throw FineTuneError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
    }
}

/// A file mapped read-only into memory (pages are shared by every process that maps it).
public final class MappedFile: @unchecked Sendable {
    public let count: Int
    let base: UnsafeRawPointer?
    public var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base?.assumingMemoryBound(to: UInt8.self), count: count) }

    public init(path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FineTuneError("\(path): cannot read the file (\(String(cString: strerror(errno))))") }
        defer { Glibc.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FineTuneError("\(path): cannot stat: \(String(cString: strerror(errno)))") }
        count = Int(info.st_size)
        if count == 0 { base = nil; return }
        guard let mapped = mmap(nil, count, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw FineTuneError("\(path): cannot map: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(mapped)
    }
    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) } }

    @inline(__always)
    public func load<T>(_ type: T.Type, at index: Int) -> T {
        base!.loadUnaligned(fromByteOffset: index * MemoryLayout<T>.stride, as: T.self)
    }
}
