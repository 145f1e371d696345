import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import Foundation

/// One data-parallel optimizer step, the same for `train` and `bench`: forward, backward with the
/// gradient exchange overlapped, the rest of the exchange, and (when the summed gradients are
/// finite) the optimizer update. Timed from outside the math.
public final class TrainingStep {
    public let model: FineTunableModel
    public let optimizer: Optimizer
    public let exchange: GradientExchange

    /// Seconds of each part of the last step.
    public struct Timings: Sendable {
        public var forward = 0.0, backward = 0.0
        /// After backward until the gradients are summed, plus (sharded) the parameters' allgather.
        public var exposedCommunication = 0.0
        public var optimizer = 0.0
        public var total = 0.0
        /// The exposed communication's parts.
        public var exchange = GradientExchange.FinishTimings()
    }

    public struct Outcome: Sendable {
        /// The sums every rank agrees on.
        public var exchanged: GradientExchange.Result
        /// This rank's own batch figures.
        public var local: BatchStatistics
        /// Whether the update was applied (false when the loss or the summed gradients were not finite).
        public var updated: Bool
        public var timings: Timings
        /// Mean loss over the global batch.
        public var loss: Double { exchanged.lossSum / Double(max(exchanged.examples, 1)) }
    }

    /// The exchange sums `model`'s gradients over `comm`; the optimizer keeps state for the
    /// parameters this rank updates (all, or its block with optimizer-state sharding).
    public init(model: FineTunableModel, optimizer settings: OptimizerSettings, comm: Communicator, exchange: GradientExchange.Settings) {
        self.model = model
        self.exchange = GradientExchange(comm: comm, gradients: model.gradients, sparse: model.sparseGradientTensors,
                                         touchedRows: { [unowned model] in model.touchedRows(in: $0) }, settings: exchange)
        optimizer = Optimizer(settings: settings, layout: model.layout, shard: self.exchange.shard)
    }

    /// A step over this rank's `batch` (its slice of the global batch; possibly empty).
    public func run(_ batch: Batch, dropoutSeed: UInt64, step: Int, learningRate: Double, preempted: Bool) throws -> Outcome {
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        var t = Timings()
        let start = clock()
        model.gradients.zero()
        exchange.beginStep(examples: batch.count, preempted: preempted)
        let local = model.forward(batch, mode: .training(seed: dropoutSeed, step: step))
        try exchange.forwardDone(lossSum: local.lossSum)
        let forwardDone = clock()
        var readyError: Error? = nil
        model.backward { offset in
            if readyError == nil { do { try exchange.ready(from: offset) } catch { readyError = error } }
        }
        if let readyError { throw readyError }
        let backwardDone = clock()
        let exchanged = try exchange.finish()
        let summed = clock()
        let updated = exchanged.finite && exchanged.lossSum.isFinite && exchanged.examples > 0
        var gatherTime = 0.0
        if updated {
            // The exchanged gradient is a sum over the global batch: the optimizer averages it.
            optimizer.step(parameters: model.parameters, gradientsOfShard: exchange.gradientsOfShard,
                           gradientScale: 1 / Float(exchanged.examples), learningRate: learningRate)
            let updateDone = clock()
            try exchange.afterUpdate(model.parameters)
            gatherTime = clock() - updateDone
            t.optimizer = updateDone - summed
        }
        t.forward = forwardDone - start
        t.backward = backwardDone - forwardDone
        t.exposedCommunication = summed - backwardDone + gatherTime
        t.exchange = exchange.finishTimings
        t.total = clock() - start
        return Outcome(exchanged: exchanged, local: local, updated: updated, timings: t)
    }
}
