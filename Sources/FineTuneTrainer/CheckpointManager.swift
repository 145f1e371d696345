import FineTuneDistributed
import FineTuneIO
import FineTuneKernels
import FineTuneModels
import Foundation

/// The run's checkpoints/: finding the one to resume from, saving (rank 0 writes, atomically), and
/// retention. Every rank calls `save`; the others wait with the I/O allowance.
final class CheckpointManager {
    let folder: CheckpointFolder
    let comm: Communicator
    let ioTimeout: Double
    let keep: Int?
    /// Test-only: rank 0 sleeps between a checkpoint's files.
    let pauseBetweenFiles: Double

    init(outputPath: String, comm: Communicator, ioTimeout: Double, keep: Int?, pauseBetweenFiles: Double) {
        folder = CheckpointFolder(path: "\(outputPath)/checkpoints")
        self.comm = comm
        self.ioTimeout = ioTimeout
        self.keep = keep
        self.pauseBetweenFiles = pauseBetweenFiles
    }

    /// Rank 0: the checkpoint to resume from (nil for a fresh run), after checking the output folder.
    /// The newest complete checkpoint's step, if any.
    var newestStep: Int? { folder.steps().first }

    func findResume(_ mode: ResumeMode, outputPath: String, note: (String) -> Void) throws -> Checkpoint? {
        folder.removeUnfinished()
        let existing = folder.steps()
        if mode == .off {
            guard existing.isEmpty else {
                throw FineTuneError("\(outputPath): already holds checkpoints (newest: step \(existing[0])); pass --resume to continue that run, or choose another --output")
            }
            return nil
        }
        guard let (step, checkpoint) = folder.newestValid(warn: note) else {
            if mode == .auto && existing.isEmpty {
                note("--resume auto: no checkpoint in \(folder.path) yet, starting fresh")
                return nil
            }
            throw FineTuneError("\(folder.path): --resume given but no complete checkpoint found")
        }
        note("resuming from \(folder.path)/\(CheckpointFolder.name(step: step))")
        return checkpoint
    }

    /// Writes the checkpoint of `state.step` (collective). With sharded optimizer state, rank 0
    /// gathers the moments of every block; no other rank holds more than its own.
    func save(model: ModelBundle, optimizer: Optimizer, shards: ParameterShards?, state: TrainerState) throws {
        let moments = try wholeMoments(optimizer, shards: shards)
        try comm.withTimeout(ioTimeout) {
            try comm.agree("saving the checkpoint of step \(state.step)") {
                guard comm.isRoot else { return }
                guard allFinite(model.model.parameters.base, count: model.model.parameters.count) else {
                    throw FineTuneError("step \(state.step): the weights are not finite; not writing a checkpoint (the previous one is kept)")
                }
                try FileManager.default.createDirectory(atPath: folder.path, withIntermediateDirectories: true)
                try Checkpoint.make(model: model, optimizer: optimizer, moments: moments, state: state)
                    .write(to: "\(folder.path)/\(CheckpointFolder.name(step: state.step))", pauseBetweenFiles: pauseBetweenFiles)
                if let keep { folder.prune(keep: keep, alsoKeep: state.bestStep) }
            }
        }
    }

    /// Rank 0: the optimizer's whole moments; other ranks: [] (they only send their blocks).
    private func wholeMoments(_ optimizer: Optimizer, shards: ParameterShards?) throws -> [[Float]] {
        try optimizer.moments.map { part in
            guard let shards else { return comm.isRoot ? part.array : [] }
            var whole = [Float](repeating: 0, count: comm.isRoot ? optimizer.trainable.count : 0)
            try whole.withUnsafeMutableBufferPointer { destination in
                try comm.gather(UnsafeBufferPointer(part.buffer), counts: shards.counts, into: destination.baseAddress, root: 0)
            }
            return whole
        }
    }
}
