import FineTuneCore
import Foundation

/// Where the run is, beyond the tensors: enough to continue exactly where it stopped.
/// All randomness is keyed by (seed, epoch, step, example index), so the seed and the global data
/// position *are* the random-number state.
public struct TrainerState: Codable, Equatable, Sendable {
    public var formatVersion = 1
    /// Optimizer steps completed.
    public var step = 0
    /// Current epoch (0-based) and how many examples of its permutation have been consumed.
    public var epoch = 0
    public var positionInEpoch = 0
    public var seed: UInt64 = 0
    public var bestMetric: Double? = nil
    public var bestStep: Int? = nil
    public var evaluationsWithoutImprovement = 0
    public var earlyStopped = false
    public var mathematicalOptions: [String: String] = [:]
    public var trainExamples = 0
    public var trainFingerprint = ""
    public init() {}

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, epoch, positionInEpoch = "position_in_epoch", seed
        case bestMetric = "best_metric", bestStep = "best_step"
        case evaluationsWithoutImprovement = "evaluations_without_improvement", earlyStopped = "early_stopped"
        case mathematicalOptions = "mathematical_options", trainExamples = "train_examples"
        case trainFingerprint = "train_fingerprint"
    }
}

/// A checkpoint as files: config.json, model.safetensors, optimizer.safetensors,
/// trainer_state.json, and manifest.json (SHA-256 and size of each, written last).
public struct Checkpoint {
    public static let fileNames = ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    public var files: [String: Data]

    public init(files: [String: Data]) { self.files = files }

    /// The model's own files (config.json, model.safetensors, tokenizer files), the optimizer state
    /// and the trainer state.
    /// `moments`: the optimizer's whole first and second moments (gathered from every rank's shard
    /// when the optimizer state is sharded).
    public static func make(model: FineTunableModel, optimizer: Optimizer, moments: (first: [Float], second: [Float]), state: TrainerState) -> Checkpoint {
        var writer = SafetensorsWriter()
        writer.metadata = ["optimizer": optimizer.settings.kind.rawValue, "step_count": String(optimizer.stepCount)]
        writer.add("first_moment", shape: [moments.first.count], floats: moments.first)
        writer.add("second_moment", shape: [moments.second.count], floats: moments.second)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var files = model.internalFiles()
        files["optimizer.safetensors"] = writer.serialized()
        files["trainer_state.json"] = try! encoder.encode(state)
        return Checkpoint(files: files)
    }

    static func manifest(_ files: [String: Data]) -> Data {
        let entries = files.keys.sorted().map { name -> [String: Any] in
            ["file": name, "bytes": files[name]!.count, "sha256": SHA256.hex(files[name]!)]
        }
        return try! JSONSerialization.data(withJSONObject: ["format_version": 1, "files": entries], options: [.prettyPrinted, .sortedKeys])
    }

    /// Writes the checkpoint folder atomically: files fsynced under a temporary name, manifest last, renamed.
    /// `pauseBetweenFiles` (test-only) widens the window in which a kill lands mid-write.
    public func write(to folder: String, pauseBetweenFiles: Double = 0) throws {
        var all = files
        all["manifest.json"] = Checkpoint.manifest(files)
        try AtomicFiles.writeFolder(folder, files: all, pauseBetweenFiles: pauseBetweenFiles)
    }

    /// Reads and verifies a checkpoint folder against its manifest.
    public static func read(from folder: String) throws -> Checkpoint {
        let fm = FileManager.default
        guard let manifestData = fm.contents(atPath: "\(folder)/manifest.json"),
              let manifest = (try? JSONSerialization.jsonObject(with: manifestData)) as? [String: Any],
              let entries = manifest["files"] as? [[String: Any]] else {
            throw FineTuneError("\(folder): incomplete checkpoint (no readable manifest.json)")
        }
        var files: [String: Data] = [:]
        for entry in entries {
            guard let name = entry["file"] as? String, let sha = entry["sha256"] as? String else {
                throw FineTuneError("\(folder)/manifest.json: malformed entry")
            }
            guard let data = fm.contents(atPath: "\(folder)/\(name)") else {
                throw FineTuneError("\(folder)/\(name): missing (listed in manifest.json)")
            }
            guard SHA256.hex(data) == sha else {
                throw FineTuneError("\(folder)/\(name): SHA-256 does not match manifest.json (truncated or altered)")
            }
            files[name] = data
        }
        for name in fileNames where files[name] == nil {
            throw FineTuneError("\(folder): manifest.json does not list \(name)")
        }
        return Checkpoint(files: files)
    }

    public func state() throws -> TrainerState {
        do { return try JSONDecoder().decode(TrainerState.self, from: files["trainer_state.json"]!) } catch {
            throw FineTuneError("trainer_state.json: \(error)")
        }
    }

    /// Restores the optimizer state (the weights load like a model folder's, see ModelDescription).
    public func restore(optimizer: Optimizer) throws {
        guard let data = files["optimizer.safetensors"] else { throw FineTuneError("checkpoint: no optimizer.safetensors") }
        let moments = try SafetensorsFile(data: data, path: "optimizer.safetensors")
        // The file holds the whole moments; this rank keeps its shard of them.
        for (name, buffer) in [("first_moment", optimizer.firstMoment), ("second_moment", optimizer.secondMoment)] {
            let values = try moments.floats(name)
            let expected = buffer.count == 0 ? 0 : optimizer.layout.count
            guard values.count == expected else {
                throw FineTuneError("optimizer.safetensors: \(name) has \(values.count) values, expected \(expected) (was the optimizer changed?)")
            }
            if buffer.count > 0 {
                values.withUnsafeBufferPointer { buffer.base.update(from: $0.baseAddress! + optimizer.shard.lowerBound, count: buffer.count) }
            }
        }
        guard let count = moments.metadata["step_count"].flatMap(Int.init) else {
            throw FineTuneError("optimizer.safetensors: no step_count in metadata")
        }
        optimizer.stepCount = count
    }

    /// One byte string holding every file, to broadcast from rank 0.
    public func archive() -> [UInt8] {
        var out: [UInt8] = []
        func put(_ n: Int) { withUnsafeBytes(of: UInt64(n).littleEndian) { out.append(contentsOf: $0) } }
        put(files.count)
        for name in files.keys.sorted() {
            let nameBytes = Array(name.utf8)
            put(nameBytes.count); out.append(contentsOf: nameBytes)
            put(files[name]!.count); out.append(contentsOf: files[name]!)
        }
        return out
    }

    public init(archive bytes: [UInt8]) throws {
        var cursor = 0
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, cursor + n <= bytes.count else { throw FineTuneError("checkpoint archive truncated") }
            defer { cursor += n }
            return bytes[cursor..<(cursor + n)]
        }
        func number() throws -> Int {
            let b = try take(8)
            return Int(b.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        }
        var files: [String: Data] = [:]
        for _ in 0..<(try number()) {
            let name = String(decoding: try take(try number()), as: UTF8.self)
            files[name] = Data(try take(try number()))
        }
        self.files = files
    }
}

/// The checkpoints/ folder of a run: step-00000042 folders, each complete once renamed into place.
public struct CheckpointFolder {
    public let path: String
    public init(path: String) { self.path = path }

    public static func name(step: Int) -> String { String(format: "step-%08d", step) }

    /// Steps of the checkpoints present, newest first (folders still under a temporary name are ignored).
    public func steps() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { $0.hasPrefix("step-") ? Int($0.dropFirst(5)) : nil }.sorted(by: >)
    }

    /// Removes folders of saves that never completed (a crash during a write leaves them behind).
    public func removeUnfinished() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names where name.hasPrefix(".step-") && (name.contains(".tmp-") || name.contains(".old-")) {
            try? FileManager.default.removeItem(atPath: "\(path)/\(name)")
        }
    }

    /// Deletes all but the `keep` newest checkpoints, never the one of step `alsoKeep` (the best).
    public func prune(keep: Int, alsoKeep: Int?) {
        for step in steps().dropFirst(keep) where step != alsoKeep {
            try? FileManager.default.removeItem(atPath: "\(path)/\(CheckpointFolder.name(step: step))")
        }
    }

    /// The newest checkpoint that verifies; broken ones are skipped with a warning.
    public func newestValid(warn: (String) -> Void) -> (step: Int, checkpoint: Checkpoint)? {
        for step in steps() {
            let folder = "\(path)/\(CheckpointFolder.name(step: step))"
            do { return (step, try Checkpoint.read(from: folder)) } catch {
                warn("warning: skipping checkpoint \(folder): \(error)")
            }
        }
        return nil
    }
}
