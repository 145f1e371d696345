import FineTuneKernels
import FineTuneModels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Durable, atomic file-system writes: a reader (or a resumed run after a crash) sees either the old
/// file or folder or the complete new one, never a half-written one.
public enum AtomicFiles {
    /// The folder that holds `path`: "." for a bare name, "/" for a name at the root. (NSString's
    /// deletingLastPathComponent traps on a bare name in swift-corelibs-foundation 6.3.)
    public static func parentFolder(of path: String) -> String {
        var path = Substring(path)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Creates the folder `path` and any missing parents (an existing folder is fine). Failures are
    /// said in a user's terms, naming `option` (e.g. "--output") when the path came from one:
    /// an empty path, a file in the way, a read-only file system, no permission.
    public static func createFolder(_ path: String, option: String? = nil) throws {
        let subject = option.map { "\($0) \(path)" } ?? path
        guard !path.isEmpty else { throw FineTuneError("\(option ?? "the folder path") is empty: name a folder") }
        func create(_ folder: String) throws {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
                if isFolder.boolValue { return }
                throw FineTuneError(folder == path ? "\(subject): is a file, not a folder; choose another path"
                                                   : "\(subject): \(folder) is a file, not a folder")
            }
            let parent = parentFolder(of: folder)
            if parent != folder { try create(parent) }
            if mkdir(folder, 0o755) != 0 && errno != EEXIST {
                let why = String(cString: strerror(errno))
                throw FineTuneError(folder == path ? "\(subject): cannot create the folder: \(why)"
                                                   : "\(subject): cannot create the folder \(folder): \(why)")
            }
        }
        try create(path)
        if option != nil && access(path, W_OK) != 0 {
            throw FineTuneError("\(subject): cannot write into the folder: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `data` to `path` through a temporary file in the same folder, fsyncs it, renames it
    /// over `path` and fsyncs the folder.
    public static func write(_ data: Data, to path: String) throws {
        let directory = parentFolder(of: path)
        let temporary = directory + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
        try writeAndSync(data, to: temporary)
        guard rename(temporary, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temporary)
            throw FineTuneError("\(path): cannot rename \(temporary) into place: \(why)")
        }
        try syncDirectory(directory)
    }

    /// Writes and fsyncs a file (not atomic by itself: used inside folders renamed into place).
    public static func writeAndSync(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FineTuneError("\(path): cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { try writeAll($0, to: fd, path: path) }
        guard fsync(fd) == 0 else { throw FineTuneError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
    }

    /// Writes every byte of `bytes` to `fd` (retrying short writes and interrupts).
    static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32, path: String) throws {
        var written = 0
        while written < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                throw FineTuneError("\(path): write failed: \(String(cString: strerror(errno)))")
            }
            written += n
        }
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
        let parent = parentFolder(of: path)
        let name = (path as NSString).lastPathComponent
        let temporary = "\(parent)/.\(name).tmp-\(getpid())"
        let old = "\(parent)/.\(name).old-\(getpid())"
        try? fm.removeItem(atPath: temporary)
        do {
            try createFolder(temporary)
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
                try createFolder(parentFolder(of: file))
                try writeAndSync(files[name]!, to: file)
                if pauseBetweenFiles > 0 { usleep(UInt32(pauseBetweenFiles * 1_000_000)) }
            }
        }
    }
}
