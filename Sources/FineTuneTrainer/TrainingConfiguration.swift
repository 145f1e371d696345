import FineTuneCore
import Foundation

public enum MonitoredMetric: String, Sendable, CaseIterable {
    case valLoss = "val_loss", valAccuracy = "val_accuracy"
    /// Whether larger is better.
    public var maximize: Bool { self == .valAccuracy }
}

/// Everything a training run needs, resolved from the command line (the CLI maps options onto
/// this; the library never sees argument parsing).
public struct TrainingConfiguration: Sendable {
    public var modelPath: String
    public var trainPath: String
    public var validPath: String?
    /// Evaluated once at the end, with the best model (or the final one without validation).
    public var testPath: String? = nil
    public var outputPath: String
    /// Text models: pooling for a model without a head (nil: the folder's own, else mean).
    public var pooling: Pooling? = nil
    /// Text models: tokens per example, [CLS] and [SEP] included (nil: the model's, at most 128).
    public var maxLength: Int? = nil

    public var epochs: Int = 3
    /// Ends the run at this many optimizer steps if reached before `epochs`.
    public var maxSteps: Int? = nil
    /// Examples per optimizer step over all ranks.
    public var batchSize: Int = 32
    public var learningRate: Double = 1e-3
    public var schedule: ScheduleKind = .constant
    public var warmupSteps: Int? = nil
    public var warmupRatio: Double = 0
    public var optimizer = OptimizerSettings()
    public var seed: UInt64 = 0

    /// Evaluate every this many steps (0: only at the end of each epoch).
    public var evalEvery: Int = 0
    public var evalBatchSize: Int = 256
    public var patience: Int? = nil
    public var minDelta: Double = 0
    public var monitor: MonitoredMetric = .valLoss

    /// Checkpoint every this many steps (0: only at the end).
    public var saveEvery: Int = 0
    public var resume: Bool = false
    /// Stop cleanly after this step with a checkpoint, as an interruption would.
    public var stopAfterSteps: Int? = nil
    /// Print and record a training line every this many steps.
    public var logEvery: Int = 1
    /// Test-only: each rank appends "epoch step example" lines for every example it trains on.
    public var exampleLogFolder: String? = nil
    /// Test-only fault injection.
    public var debug = DebugSwitches()

    /// Seconds one collective of the training loop may take before the job is aborted.
    public var collectiveTimeout: Double = 300
    /// Seconds the other ranks wait for rank 0's file writes (checkpoints, best/, final/).
    public var ioTimeout: Double = 1800
    public var onNonFinite: NonFinitePolicy = .stop
    /// Allreduce gradient buckets while backward runs (off: one allreduce after backward).
    public var overlapCommunication = true
    public var bucketMegabytes = 25.0
    /// ZeRO stage 1: each rank keeps and updates the optimizer state of 1/N of the parameters.
    public var shardOptimizer = false
    /// Compare a checksum of every rank's parameters every this many steps (0: never).
    public var checkReplicasEvery: Int = 100
    /// Keep this many newest checkpoints (nil: all); the best evaluation's checkpoint is always kept.
    public var keepCheckpoints: Int? = nil
    /// With `resume`: start fresh when the output folder has no checkpoint yet.
    public var resumeIfPossible = false

    /// The command line, for the record.
    public var commandLine: [String] = []

    public init(modelPath: String, trainPath: String, validPath: String?, outputPath: String) {
        self.modelPath = modelPath
        self.trainPath = trainPath
        self.validPath = validPath
        self.outputPath = outputPath
    }

    /// Options that change the mathematics of the run: resuming with any of them changed is refused.
    /// The run length counts only when the learning-rate schedule depends on it.
    public var mathematicalOptions: [String: String] {
        var o: [String: String] = [
            "batch-size": String(batchSize),
            "lr": String(learningRate),
            "lr-schedule": schedule.rawValue,
            "optimizer": optimizer.kind.rawValue,
            "weight-decay": String(optimizer.weightDecay),
            "seed": String(seed),
        ]
        if let maxLength { o["max-length"] = String(maxLength) }
        if let pooling { o["pooling"] = pooling.rawValue }
        switch optimizer.kind {
        case .adamw:
            o["adam-beta1"] = String(optimizer.beta1)
            o["adam-beta2"] = String(optimizer.beta2)
            o["adam-epsilon"] = String(optimizer.epsilon)
        case .sgd:
            o["momentum"] = String(optimizer.momentum)
        }
        if schedule != .constant || warmupSteps != nil || warmupRatio > 0 {
            o["epochs"] = String(epochs)
            o["max-steps"] = maxSteps.map(String.init) ?? "none"
            o["warmup-steps"] = warmupSteps.map(String.init) ?? "none"
            o["warmup-ratio"] = String(warmupRatio)
        }
        return o
    }

    /// The resolved configuration as JSON, written to the output folder.
    public func jsonObject(totalSteps: Int, warmup: Int) -> [String: Any] {
        var o: [String: Any] = [
            "model": modelPath, "train": trainPath, "output": outputPath,
            "epochs": epochs, "batch_size": batchSize, "lr": learningRate, "lr_schedule": schedule.rawValue,
            "warmup_steps": warmup, "total_steps": totalSteps,
            "optimizer": optimizer.kind.rawValue, "weight_decay": optimizer.weightDecay,
            "adam_beta1": optimizer.beta1, "adam_beta2": optimizer.beta2, "adam_epsilon": optimizer.epsilon,
            "momentum": optimizer.momentum, "seed": seed,
            "eval_every": evalEvery, "eval_batch_size": evalBatchSize, "min_delta": minDelta,
            "monitor": monitor.rawValue, "save_every": saveEvery, "log_every": logEvery, "resume": resume,
            "command_line": commandLine,
        ]
        if let validPath { o["valid"] = validPath }
        if let testPath { o["test"] = testPath }
        if let maxLength { o["max_length"] = maxLength }
        if let pooling { o["pooling"] = pooling.rawValue }
        if let maxSteps { o["max_steps"] = maxSteps }
        if let patience { o["patience"] = patience }
        if let stopAfterSteps { o["stop_after_steps"] = stopAfterSteps }
        return o
    }
}
