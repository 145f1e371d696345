import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import FineTuneIO
import Foundation

/// metrics.jsonl: one JSON object a line, appended and flushed by rank 0 as the run goes.
public final class MetricsLog {
    private let handle: FileHandle
    public let path: String
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // A diverged run's NaN loss is written as the string "NaN", never dropped.
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }()

    /// Opens `path` for appending. On resume, lines from steps after `keepThroughStep` (logged
    /// after the checkpoint by the run that was interrupted) are dropped so the log reads as one run.
    public init(path: String, keepThroughStep: Int?) throws {
        self.path = path
        let fm = FileManager.default
        if let keep = keepThroughStep, let old = fm.contents(atPath: path) {
            let kept = String(decoding: old, as: UTF8.self).split(separator: "\n").filter { line in
                guard case .object(let o)? = try? decodeJSON(JSONValue.self, from: Data(line.utf8)),
                      let step = o["step"]?.number else { return false }
                return Int(step) <= keep
            }
            try AtomicFiles.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        } else if keepThroughStep == nil {
            try AtomicFiles.write(Data(), to: path)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw FineTuneError("\(path): cannot open for writing") }
        try h.seekToEnd()
        handle = h
    }

    public func append(_ record: any Encodable) throws {
        do {
            try handle.write(contentsOf: try encoder.encode(record) + Data("\n".utf8))
        } catch {
            throw FineTuneError("\(path): cannot append a line: \(error.localizedDescription)")
        }
    }
}
