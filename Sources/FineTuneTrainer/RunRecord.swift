import FineTuneCore
import FineTuneDistributed
import Foundation

/// metrics.jsonl: one JSON object a line, appended and flushed by rank 0 as the run goes.
public final class MetricsLog {
    private let handle: FileHandle?
    public let path: String

    /// Opens `path` for appending. On resume, lines from steps after `keepThroughStep` (logged
    /// after the checkpoint by the run that was interrupted) are dropped so the log reads as one run.
    public init(path: String, keepThroughStep: Int?) throws {
        self.path = path
        let fm = FileManager.default
        if let keep = keepThroughStep, let old = fm.contents(atPath: path) {
            let kept = String(decoding: old, as: UTF8.self).split(separator: "\n").filter { line in
                guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                      let step = o["step"] as? Int else { return false }
                return step <= keep
            }
            try AtomicFiles.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        } else if keepThroughStep == nil {
            try AtomicFiles.write(Data(), to: path)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw FineTuneError("\(path): cannot open for writing") }
        h.seekToEndOfFile()
        handle = h
    }

    public func append(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        handle?.write(data + Data("\n".utf8))
    }
}

/// Where and how the run ran: written to run.json by rank 0.
public enum Provenance {
    /// finetune-dist's git commit, read from the source tree this binary was built from
    /// ("unknown" when that tree is not there); "+dirty" when it had uncommitted changes.
    public static func gitCommit() -> String {
        let sourceDirectory = (#filePath as NSString).deletingLastPathComponent
        func git(_ args: [String]) -> String? {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["git", "-C", sourceDirectory] + args
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return nil }
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return p.terminationStatus == 0 ? String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : nil
        }
        guard let commit = git(["rev-parse", "HEAD"]) else { return "unknown" }
        let dirty = (git(["status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty ? "" : "+dirty"
        return commit + dirty
    }

    public static var swiftVersion: String {
        #if swift(>=6.4)
        return ">=6.4"
        #elseif swift(>=6.3)
        return "6.3"
        #elseif swift(>=6.2)
        return "6.2"
        #elseif swift(>=6.1)
        return "6.1"
        #elseif swift(>=6.0)
        return "6.0"
        #else
        return "<6.0"
        #endif
    }
}
