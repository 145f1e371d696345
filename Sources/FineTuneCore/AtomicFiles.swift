import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Durable, atomic file-system writes: a reader (or a resumed run after a crash) sees either the old
/// file or folder or the complete new one, never a half-written one.
public enum AtomicFiles {
    /// Writes `data` to `path` through a temporary file in the same folder, fsyncs it, renames it
    /// over `path` and fsyncs the folder.
    public static func write(_ data: Data, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
        try writeAndSync(data, to: temporary)
        guard rename(temporary, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temporary)
            throw FineTuneError("\(path): cannot rename \(temporary) into place: \(why)")
        }
        try syncDirectory(directory.isEmpty ? "." : directory)
    }

    /// Writes and fsyncs a file (not atomic by itself: used inside folders renamed into place).
    public static func writeAndSync(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FineTuneError("\(path): cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FineTuneError("\(path): write failed: \(String(cString: strerror(errno)))")
                }
                written += n
            }
        }
        guard fsync(fd) == 0 else { throw FineTuneError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
    }

    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FineTuneError("\(path): cannot open folder: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = fsync(fd)
    }

    /// Builds a folder under a temporary name with `fill`, fsyncs it, then renames it to `path`.
    /// An existing `path` is replaced: it is first renamed aside, and removed only once the new one is in place.
    public static func writeFolder(_ path: String, fill: (String) throws -> Void) throws {
        let fm = FileManager.default
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = "\(parent)/.\(name).tmp-\(getpid())"
        let old = "\(parent)/.\(name).old-\(getpid())"
        try? fm.removeItem(atPath: temporary)
        do {
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true)
            try fill(temporary)
            try syncDirectory(temporary)
        } catch {
            try? fm.removeItem(atPath: temporary)
            throw error
        }
        let hadOld = fm.fileExists(atPath: path)
        if hadOld {
            try? fm.removeItem(atPath: old)
            guard rename(path, old) == 0 else { throw FineTuneError("\(path): cannot move aside: \(String(cString: strerror(errno)))") }
        }
        guard rename(temporary, path) == 0 else {
            let why = String(cString: strerror(errno))
            if hadOld { rename(old, path) }
            throw FineTuneError("\(path): cannot rename \(temporary) into place: \(why)")
        }
        try syncDirectory(parent)
        if hadOld { try? fm.removeItem(atPath: old) }
    }
}

extension AtomicFiles {
    /// Writes `files` (relative paths; sub-folders are created) as the folder `path`, atomically.
    /// A `manifest.json`, if among them, is written last.
    public static func writeFolder(_ path: String, files: [String: Data], pauseBetweenFiles: Double = 0) throws {
        try writeFolder(path) { dir in
            for name in files.keys.sorted(by: { ($0 == "manifest.json" ? 1 : 0, $0) < ($1 == "manifest.json" ? 1 : 0, $1) }) {
                let file = "\(dir)/\(name)"
                try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try writeAndSync(files[name]!, to: file)
                if pauseBetweenFiles > 0 { usleep(UInt32(pauseBetweenFiles * 1_000_000)) }
            }
        }
    }
}

/// SHA-256 (FIPS 180-4), for checkpoint manifests and data fingerprints.
public struct SHA256 {
    private var state: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]

    public init() {}

    public mutating func update<D: DataProtocol>(_ data: D) {
        for region in data.regions {
            region.withUnsafeBytes { update(bytes: $0) }
        }
    }

    public mutating func update(bytes: UnsafeRawBufferPointer) {
        guard var cursor = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        var remaining = bytes.count
        length &+= UInt64(remaining)
        if !pending.isEmpty {
            let take = min(64 - pending.count, remaining)
            pending.append(contentsOf: UnsafeBufferPointer(start: cursor, count: take))
            cursor += take; remaining -= take
            if pending.count == 64 {
                pending.withUnsafeBufferPointer { compress($0.baseAddress!) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while remaining >= 64 {
            compress(cursor)
            cursor += 64; remaining -= 64
        }
        if remaining > 0 { pending.append(contentsOf: UnsafeBufferPointer(start: cursor, count: remaining)) }
    }

    public mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail: [UInt8] = [0x80]
        while (pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        pending.append(contentsOf: tail)
        var start = 0
        while start < pending.count {
            pending.withUnsafeBufferPointer { compress($0.baseAddress! + start) }
            start += 64
        }
        return state.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (24 - 8 * $0)) } }
    }

    public static func hex<D: DataProtocol>(_ data: D) -> String {
        var h = SHA256()
        h.update(data)
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    private mutating func compress(_ block: UnsafePointer<UInt8>) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { compress(block, schedule: $0.baseAddress!) }
    }

    private mutating func compress(_ block: UnsafePointer<UInt8>, schedule w: UnsafeMutablePointer<UInt32>) {
        for i in 0..<16 {
            w[i] = UInt32(block[4 * i]) << 24 | UInt32(block[4 * i + 1]) << 16 | UInt32(block[4 * i + 2]) << 8 | UInt32(block[4 * i + 3])
        }
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6], h = state[7]
        for i in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ ch &+ SHA256.k[i] &+ w[i]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            h = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }
}
