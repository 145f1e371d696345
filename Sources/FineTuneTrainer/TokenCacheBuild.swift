import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// Where a run keeps its token cache, and who says what.
public struct TokenCacheSettings {
    public let folder: String
    public let comm: Communicator
    /// Rank 0's notices (built, reused, rebuilt and why).
    public let note: (String) -> Void
    /// Rank 0: an entry this process built and sealed (a run that fails at set-up removes them).
    public let built: (String) -> Void
    public init(folder: String, comm: Communicator, note: @escaping (String) -> Void, built: @escaping (String) -> Void = { _ in }) {
        self.folder = folder; self.comm = comm; self.note = note; self.built = built
    }
}

/// Finds or builds a file's token cache entry, every rank taking part.
public enum TokenCacheBuild {
    /// The sealed entry for `request`: reused when every rank finds it complete for the file as
    /// it is now (the same key), else built by all ranks (each a slice of the file) and sealed by
    /// rank 0. A damaged or stale entry is rebuilt with a notice, never read.
    /// Nil when the ranks cannot share a cache folder (no shared filesystem): the caller reads the file as without one.
    public static func ensure(_ request: TokenCache.Request, settings: TokenCacheSettings) throws -> (entry: String, meta: TokenCache.Meta)? {
        let comm = settings.comm
        let key = try comm.agree("reading \(request.path)") { try TokenCache.key(request) }
        // Every rank must read the same file (a host with another copy would tokenize other text).
        let digests = try comm.allgather(string: key.digest)
        if let other = digests.firstIndex(where: { $0 != digests[0] }) {
            throw FineTuneError("\(request.path): rank \(other) sees another file than rank 0 (size, modification time or content differ); " +
                                "every host needs the same data file")
        }
        let entry = TokenCache.entryPath(cacheDir: settings.folder, request: request, key: key)
        let status = TokenCache.status(entry: entry, key: key)
        var ready: [Int64] = [{ if case .ready = status { return 1 } else { return 0 } }()]
        try comm.allreduce(&ready, op: .min)
        if ready[0] == 1, case .ready(let meta) = status {
            if comm.isRoot { settings.note("token cache: \(request.path): \(meta.examples) examples, \(meta.tokens) tokens, read from \(entry)") }
            return (entry, meta)
        }
        if comm.isRoot, case .damaged(let why) = status { settings.note("token cache: \(why); rebuilding it") }
        return try build(request, key: key, entry: entry, settings: settings)
    }

    static func build(_ request: TokenCache.Request, key: TokenCache.Key, entry: String, settings: TokenCacheSettings) throws -> (entry: String, meta: TokenCache.Meta)? {
        let comm = settings.comm
        let started = Date()
        // A fresh folder for this build, named by rank 0 and seen by every rank (a shared filesystem).
        let nonce = try comm.allgather(string: "\(getpid())-\(UInt32.random(in: 0...UInt32.max))")[0]
        let building = "\(entry).building-\(nonce)"
        try comm.agree("creating the token cache folder") {
            guard comm.isRoot else { return }
            try AtomicFiles.createFolder(settings.folder, option: "--cache-dir")
            TokenCache.removeAbandonedBuilds(of: entry)
            try AtomicFiles.createFolder(building)
        }
        var seen: [Int64] = [FileManager.default.fileExists(atPath: building) ? 1 : 0]
        try comm.allreduce(&seen, op: .min)
        if seen[0] == 0 {
            if comm.isRoot {
                try? FileManager.default.removeItem(atPath: building)
                settings.note("token cache: not every rank sees \(settings.folder) (no shared filesystem?), so each rank reads \(request.path) " +
                              "itself, as without the cache; a --cache-dir every rank sees, or `finetune-dist tokenize` run on each host ahead " +
                              "of the job, lets them share one")
            }
            return nil
        }
        // A CSV record may span lines, so one rank reads it; other files are cut at lines, a slice per rank.
        let parts = request.isCSV ? 1 : comm.size
        let mine: Range<Int>? = try comm.agree("reading \(request.path)") {
            comm.rank < parts ? TokenCache.sourceRange(of: try MappedFile(path: request.path), part: comm.rank, parts: parts) : nil
        }
        let breaks = try comm.agree("counting lines") { try mine.map { TokenCache.lineBreaks(in: try MappedFile(path: request.path), range: $0) } ?? 0 }
        let before = try comm.allgather(string: String(breaks)).map { Int($0)! }
        let firstLine = 1 + before[..<comm.rank].reduce(0, +)
        do {
            try comm.agree("tokenizing \(request.path)") {
                if let mine { _ = try TokenCache.buildPart(request, part: comm.rank, range: mine, firstLine: firstLine, in: building) }
            }
            let meta = try comm.agree("sealing the token cache") { () -> TokenCache.Meta? in
                guard comm.isRoot else { return nil }
                return try TokenCache.seal(building: building, entry: entry, key: key, source: request.path, parts: parts,
                                           seconds: Date().timeIntervalSince(started), ranks: comm.size)
            }
            if let meta {
                settings.built(entry)
                let megabytes = Double(key.fileSize) / 1e6, seconds = max(meta.buildSeconds, 1e-6)
                settings.note(String(format: "token cache: tokenized %@ (%.1f MB) on %d rank(s) in %.1f s (%.1f MB/s): %d examples, %d tokens, in %@",
                                     request.path, megabytes, parts, seconds, megabytes / seconds, meta.examples, meta.tokens, entry))
            }
        } catch {
            if comm.isRoot { try? FileManager.default.removeItem(atPath: building) }
            throw error
        }
        // Every rank reads the sealed entry as a later run would.
        return try comm.agree("opening the token cache") {
            guard case .ready(let meta) = TokenCache.status(entry: entry, key: key) else {
                throw FineTuneError("token cache: \(entry) is not complete after building it (another process replaced it?)")
            }
            return (entry, meta)
        }
    }
}
