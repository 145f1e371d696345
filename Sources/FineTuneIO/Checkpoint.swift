import FineTuneJSON
import FineTuneKernels
import FineTuneModels
import Foundation

/// Where the run is, beyond the tensors: enough to continue exactly where it stopped.
/// All randomness is keyed by (seed, epoch, step, example index), so the seed and the global data
/// position *are* the random-number state.
public struct TrainerState: Codable, Equatable, Sendable {
    public var formatVersion = Checkpoint.formatVersion
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
    /// The absolute path of the --model the run started from (absent in older checkpoints).
    public var modelPath: String? = nil
    public init() {}

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, epoch, positionInEpoch = "position_in_epoch", seed
        case bestMetric = "best_metric", bestStep = "best_step"
        case evaluationsWithoutImprovement = "evaluations_without_improvement", earlyStopped = "early_stopped"
        case mathematicalOptions = "mathematical_options", trainExamples = "train_examples"
        case trainFingerprint = "train_fingerprint", modelPath = "model_path"
    }
}

/// manifest.json: the SHA-256 and size of every other file, written last.
struct CheckpointManifest: Codable {
    struct Entry: Codable { var file: String; var bytes: Int; var sha256: String }
    var formatVersion: Int
    var files: [Entry]
    enum CodingKeys: String, CodingKey { case formatVersion = "format_version", files }
}

/// A checkpoint as files: the model's own files (config.json, model.safetensors, tokenizer files;
/// a loadable model folder), optimizer.safetensors, trainer_state.json, and manifest.json.
///
/// optimizer.safetensors holds each moment per parameter tensor under torch's state names
/// (`exp_avg.<tensor>`, `exp_avg_sq.<tensor>`, or `momentum_buffer.<tensor>` for SGD), with the
/// optimizer kind and its step count in the metadata: independent of the flat buffer's layout and
/// of how the state was sharded, so a run resumes on any number of ranks.
public struct Checkpoint {
    /// 2: moments per tensor (1 held them as one flat vector in the layout of its day).
    public static let formatVersion = 2
    public static let requiredFiles = ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    public var files: [String: Data]

    public init(files: [String: Data]) { self.files = files }

    /// `moments`: the optimizer's moment buffers over its whole trainable range, in
    /// `optimizer.momentNames` order (gathered from every rank's shard when the state is sharded).
    /// Frozen tensors have no state and no entry.
    public static func make(model: ModelBundle, optimizer: Optimizer, moments: [[Float]], state: TrainerState) throws -> Checkpoint {
        var writer = SafetensorsWriter()
        writer.metadata = ["optimizer": optimizer.settings.kind.rawValue, "step_count": String(optimizer.stepCount),
                           "format_version": String(formatVersion)]
        // Tensors that began to train later (gradual unfreezing) count their own updates.
        let late = optimizer.trainableTensors.filter { optimizer.startSteps[$0.index] != 0 }
        if !late.isEmpty {
            writer.metadata["start_steps"] = late.map { "\($0.spec.name)=\(optimizer.startSteps[$0.index])" }.joined(separator: ",")
        }
        let base = optimizer.trainable.lowerBound
        for (name, values) in zip(optimizer.momentNames, moments) {
            values.withUnsafeBufferPointer { whole in
                for (_, spec) in optimizer.trainableTensors {
                    let local = (spec.offset - base)..<(spec.offset - base + spec.count)
                    writer.add("\(name).\(spec.name)", shape: spec.shape, floats: UnsafeBufferPointer(rebasing: whole[local]))
                }
            }
        }
        var files = try ModelFiles.internalFiles(model)
        files["optimizer.safetensors"] = try writer.serialized()
        files["trainer_state.json"] = try prettyJSON(state)
        return Checkpoint(files: files)
    }

    /// Writes the checkpoint folder atomically: files fsynced under a temporary name, manifest last, renamed.
    /// `pauseBetweenFiles` (test-only) widens the window in which a kill lands mid-write.
    public func write(to folder: String, pauseBetweenFiles: Double = 0) throws {
        var all = files
        let entries = files.keys.sorted().map { CheckpointManifest.Entry(file: $0, bytes: files[$0]!.count, sha256: Digest.sha256(files[$0]!)) }
        all["manifest.json"] = try prettyJSON(CheckpointManifest(formatVersion: Checkpoint.formatVersion, files: entries))
        try AtomicFiles.writeFolder(folder, files: all, pauseBetweenFiles: pauseBetweenFiles)
    }

    /// Reads and verifies a checkpoint folder against its manifest.
    public static func read(from folder: String) throws -> Checkpoint {
        let fm = FileManager.default
        guard let manifestData = fm.contents(atPath: "\(folder)/manifest.json"),
              let manifest = try? decodeJSON(CheckpointManifest.self, from: manifestData) else {
            throw FineTuneError("\(folder): incomplete checkpoint (no readable manifest.json)")
        }
        var files: [String: Data] = [:]
        for entry in manifest.files {
            guard let data = fm.contents(atPath: "\(folder)/\(entry.file)") else {
                throw FineTuneError("\(folder)/\(entry.file): missing (listed in manifest.json)")
            }
            guard data.count == entry.bytes, Digest.sha256(data) == entry.sha256 else {
                throw FineTuneError("\(folder)/\(entry.file): SHA-256 does not match manifest.json (truncated or altered)")
            }
            files[entry.file] = data
        }
        for name in requiredFiles where files[name] == nil {
            throw FineTuneError("\(folder): manifest.json does not list \(name)")
        }
        return Checkpoint(files: files)
    }

    public func state() throws -> TrainerState {
        let state: TrainerState
        do { state = try decodeJSON(TrainerState.self, from: files["trainer_state.json"]!) } catch {
            throw FineTuneError("trainer_state.json: \(userMessage(for: error))")
        }
        guard state.formatVersion == Checkpoint.formatVersion else {
            throw FineTuneError("trainer_state.json: checkpoint format \(state.formatVersion), this finetune-dist reads format \(Checkpoint.formatVersion) " +
                                "(the checkpoint folder is still a model folder: start a new run from it with --model)")
        }
        return state
    }

    /// Restores the optimizer state (the weights load like a model folder's, see ModelDescription):
    /// each moment of each tensor, the part inside this optimizer's shard.
    /// `unfrozenSinceCheckpoint`: tensors frozen when the checkpoint was written may train now
    /// (the user accepted a change of the freeze options): they start with zero state.
    public func restore(optimizer: Optimizer, unfrozenSinceCheckpoint: Bool = false) throws {
        guard let data = files["optimizer.safetensors"] else { throw FineTuneError("checkpoint: no optimizer.safetensors") }
        let file = try SafetensorsFile(data: data, path: "optimizer.safetensors")
        guard file.metadata["optimizer"] == optimizer.settings.kind.rawValue else {
            throw FineTuneError("optimizer.safetensors: holds \(file.metadata["optimizer"] ?? "unknown") state, the run uses \(optimizer.settings.kind.rawValue)")
        }
        guard let count = file.metadata["step_count"].flatMap(Int.init) else {
            throw FineTuneError("optimizer.safetensors: no step_count in metadata")
        }
        optimizer.stepCount = count
        var startSteps: [String: Int] = [:]
        for item in (file.metadata["start_steps"] ?? "").split(separator: ",") {
            let parts = item.split(separator: "=")
            guard parts.count == 2, let step = Int(parts[1]) else { throw FineTuneError("optimizer.safetensors: malformed start_steps entry \"\(item)\"") }
            startSteps[String(parts[0])] = step
        }
        for (index, spec) in optimizer.trainableTensors {
            let stateless = file.entries["\(optimizer.momentNames[0]).\(spec.name)"] == nil
            optimizer.startSteps[index] = stateless && unfrozenSinceCheckpoint ? count : startSteps[spec.name] ?? 0
        }
        for (name, buffer) in zip(optimizer.momentNames, optimizer.moments) {
            for (_, spec) in optimizer.trainableTensors {
                let part = spec.range.clamped(to: optimizer.shard)
                guard !part.isEmpty else { continue }
                let key = "\(name).\(spec.name)"
                if file.entries[key] == nil && unfrozenSinceCheckpoint { continue }
                guard let entry = file.entries[key], entry.shape == spec.shape else {
                    throw FineTuneError("optimizer.safetensors: no \(key) of shape \(spec.shape) (was the model, the optimizer or what is frozen changed?)")
                }
                let values = try file.floats(key)
                values.withUnsafeBufferPointer {
                    (buffer.base + (part.lowerBound - optimizer.shard.lowerBound)).update(from: $0.baseAddress! + (part.lowerBound - spec.offset), count: part.count)
                }
            }
        }
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
            guard n >= 0, n <= bytes.count - cursor else { throw FineTuneError("checkpoint archive truncated") }
            defer { cursor += n }
            return bytes[cursor..<(cursor + n)]
        }
        func number() throws -> Int {
            let b = try take(8)
            let value = b.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            guard value <= UInt64(Int.max) else { throw FineTuneError("checkpoint archive corrupt") }
            return Int(value)
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
