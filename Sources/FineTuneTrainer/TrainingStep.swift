import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import Foundation

/// One data-parallel optimizer step, the same for `train` and `bench`: forward and backward of each
/// micro-batch (gradients accumulate), the gradient exchange overlapped with the last backward, the
/// rest of the exchange, clipping, and (when the summed gradients are finite) the optimizer update.
/// Timed from outside the math.
public final class TrainingStep {
    public let model: FineTunableModel
    public let optimizer: Optimizer
    public let exchange: GradientExchange
    /// Clip the averaged gradient to this global L2 norm (nil: no clipping).
    public let maxGradientNorm: Double?
    /// Rows of the sparse tensors written by the step's earlier micro-batches (by tensor offset):
    /// the exchange sums their union with the last micro-batch's.
    private final class EarlierRows { var byTensor: [Int: Set<Int>] = [:] }
    private let earlierRows = EarlierRows()

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
        /// This rank's own batch figures (all micro-batches).
        public var local: BatchStatistics
        /// Whether the update was applied (false when the loss or the summed gradients were not finite).
        public var updated: Bool
        /// The global L2 norm of the averaged gradient before clipping (computed with clipping only).
        public var gradientNorm: Double?
        public var timings: Timings
        /// Mean loss over the global batch.
        public var loss: Double { exchanged.lossSum / Double(max(exchanged.examples, 1)) }
    }

    /// The exchange sums `model`'s trainable gradients over `comm`; the optimizer keeps state for
    /// the trainable parameters this rank updates (all, or its block with optimizer-state sharding).
    public init(model: FineTunableModel, optimizer settings: OptimizerSettings, comm: Communicator, exchange: GradientExchange.Settings,
                maxGradientNorm: Double? = nil) {
        self.model = model
        self.maxGradientNorm = maxGradientNorm
        let earlier = earlierRows
        self.exchange = GradientExchange(comm: comm, gradients: model.gradients, trainable: model.trainableRange, sparse: model.sparseGradientTensors,
                                         touchedRows: { [unowned model] spec in
                                             let last = model.touchedRows(in: spec)
                                             guard let before = earlier.byTensor[spec.offset] else { return last }
                                             return before.union(last).sorted()
                                         }, settings: exchange)
        optimizer = Optimizer(settings: settings, layout: model.layout, trainable: model.trainableRange, shard: self.exchange.shard)
    }

    /// A step over this rank's `batch` (its slice of the global batch; possibly empty).
    public func run(_ batch: Batch, dropoutSeed: UInt64, step: Int, learningRate: Double, preempted: Bool) throws -> Outcome {
        try run(microBatches: [batch], dropoutSeed: dropoutSeed, step: step, learningRate: learningRate, preempted: preempted)
    }

    /// A step over this rank's slice of the global batch in `microBatches` (gradient accumulation:
    /// each forward and backward adds into the same gradients; one exchange and one update).
    /// `checkpoint`: this rank asks for a checkpoint after the step (the exchange tells every rank).
    public func run(microBatches: [Batch], dropoutSeed: UInt64, step: Int, learningRate: Double, preempted: Bool,
                    checkpoint: Bool = false) throws -> Outcome {
        precondition(!microBatches.isEmpty)
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        var t = Timings()
        let start = clock()
        let trainable = model.trainableRange
        (model.gradients.base + trainable.lowerBound).update(repeating: 0, count: trainable.count)
        earlierRows.byTensor = [:]
        exchange.beginStep(examples: microBatches.reduce(0) { $0 + $1.count }, preempted: preempted, checkpoint: checkpoint)
        var local = BatchStatistics()
        // Every micro-batch but the last: forward and backward, remembering the sparse rows written.
        for batch in microBatches.dropLast() {
            let before = clock()
            local += model.forward(batch, mode: .training(seed: dropoutSeed, step: step))
            let forwardDone = clock()
            model.backward { _ in }
            for spec in exchange.sparseTensors { earlierRows.byTensor[spec.offset, default: []].formUnion(model.touchedRows(in: spec)) }
            t.forward += forwardDone - before
            t.backward += clock() - forwardDone
        }
        // The last one overlaps its backward with the exchange.
        let lastStart = clock()
        local += model.forward(microBatches.last!, mode: .training(seed: dropoutSeed, step: step))
        // The loss is a mean over what the statistics count: examples, or masked tokens.
        try exchange.forwardDone(lossSum: local.lossSum, count: Int(local.count))
        let forwardDone = clock()
        var readyError: Error? = nil
        model.backward { offset in
            if readyError == nil { do { try exchange.ready(from: offset) } catch { readyError = error } }
        }
        if let readyError { throw readyError }
        let backwardDone = clock()
        t.forward += forwardDone - lastStart
        t.backward += backwardDone - forwardDone
        return try complete(local: local, timings: t, start: start, backwardDone: backwardDone, learningRate: learningRate)
    }

    /// This rank's share of a contrastive (sentence-embedding) step: its examples of the global
    /// batch in mini-batches (`PairDataset.batch`: each a column-major run of texts), and how many
    /// examples each rank holds (the global batch is the ranks' shares in rank order).
    public struct ContrastiveShare {
        public var miniBatches: [Batch]
        public var examplesByRank: [Int]
        /// Texts per example: anchor, positive, hard negatives.
        public var columns: Int
        public init(miniBatches: [Batch], examplesByRank: [Int], columns: Int) {
            self.miniBatches = miniBatches; self.examplesByRank = examplesByRank; self.columns = columns
        }
    }

    /// A contrastive step with every rank's examples as negatives (GradCache when there are several
    /// mini-batches): each mini-batch's embeddings are computed (activations of the last one kept),
    /// one allgather gives every rank the global batch's embeddings, every rank computes the loss
    /// over all of them and the gradient of its own, then each mini-batch is run forward again
    /// (the same dropout) and backward from its embeddings' gradient, the last kept one first and
    /// without a second forward. One gradient exchange, overlapped with the final backward.
    public func run(contrastive share: ContrastiveShare, loss: ContrastiveLoss, dropoutSeed: UInt64, step: Int, learningRate: Double,
                    preempted: Bool, checkpoint: Bool = false) throws -> Outcome {
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        var t = Timings()
        let start = clock()
        let trainable = model.trainableRange
        (model.gradients.base + trainable.lowerBound).update(repeating: 0, count: trainable.count)
        earlierRows.byTensor = [:]
        let columns = share.columns, D = model.embeddingWidth!
        let counts = share.miniBatches.map { $0.count / columns }
        let mine = counts.reduce(0, +), A = share.examplesByRank.reduce(0, +)
        let myStart = share.examplesByRank[..<exchange.comm.rank].reduce(0, +)
        precondition(mine == share.examplesByRank[exchange.comm.rank])
        exchange.beginStep(examples: mine, preempted: preempted, checkpoint: checkpoint)
        let training = ForwardMode.training(seed: dropoutSeed, step: step)
        // The global batch's embeddings, [columns, A, D], and each rank's block as gathered: [columns, its examples, D].
        var gathered = [Float](repeating: 0, count: columns * A * D)
        var scratch = [Float](repeating: 0, count: columns * (counts.max() ?? 0) * D)
        let blockStart = { (rank: Int) in columns * D * share.examplesByRank[..<rank].reduce(0, +) }
        var offset = 0
        for (j, batch) in share.miniBatches.enumerated() {
            let before = clock()
            _ = model.forward(batch, mode: training)
            scratch.withUnsafeMutableBufferPointer { model.copyLastEmbeddings(to: $0.baseAddress!) }
            for c in 0..<columns {
                let to = blockStart(exchange.comm.rank) + (c * mine + offset) * D
                gathered.replaceSubrange(to..<(to + counts[j] * D), with: scratch[(c * counts[j] * D)..<((c + 1) * counts[j] * D)])
            }
            offset += counts[j]
            t.forward += clock() - before
        }
        let exchangeStart = clock()
        try gathered.withUnsafeMutableBufferPointer { try exchange.comm.allgatherInPlace($0, counts: share.examplesByRank.map { $0 * columns * D }) }
        var global = [Float](repeating: 0, count: columns * A * D)
        for r in share.examplesByRank.indices {
            let n = share.examplesByRank[r], first = share.examplesByRank[..<r].reduce(0, +)
            for c in 0..<columns {
                let from = blockStart(r) + c * n * D, to = (c * A + first) * D
                global.replaceSubrange(to..<(to + n * D), with: gathered[from..<(from + n * D)])
            }
        }
        var gradient = [Float](repeating: 0, count: columns * A * D)
        let losses = loss.lossAndGradient(embeddings: global, gradient: &gradient, columns: columns, A: A, D: D)
        let gatherTime = clock() - exchangeStart
        var local = BatchStatistics(count: Double(mine))
        for a in myStart..<(myStart + mine) { local.lossSum += Double(losses[a]) }
        try exchange.forwardDone(lossSum: local.lossSum, count: mine)
        // Backward, the last mini-batch first (its activations are still there).
        var readyError: Error? = nil
        var backwardDone = clock()
        if share.miniBatches.isEmpty { try exchange.ready(from: 0) }
        for j in share.miniBatches.indices.reversed() {
            let batch = share.miniBatches[j], n = counts[j], first = counts[..<j].reduce(0, +)
            let before = clock()
            if j != share.miniBatches.count - 1 { _ = model.forward(batch, mode: training) }
            let forwardDone = clock()
            for c in 0..<columns {
                let from = (c * A + myStart + first) * D
                scratch.replaceSubrange((c * n * D)..<((c + 1) * n * D), with: gradient[from..<(from + n * D)])
            }
            scratch.withUnsafeBufferPointer { model.setEmbeddingGradient($0.baseAddress!) }
            if j > 0 {
                model.backward { _ in }
                for spec in exchange.sparseTensors { earlierRows.byTensor[spec.offset, default: []].formUnion(model.touchedRows(in: spec)) }
            } else {
                model.backward { offset in
                    if readyError == nil { do { try exchange.ready(from: offset) } catch { readyError = error } }
                }
            }
            if let readyError { throw readyError }
            backwardDone = clock()
            t.forward += forwardDone - before
            t.backward += backwardDone - forwardDone
        }
        // The embeddings' allgather is communication the step waits for.
        t.exposedCommunication += gatherTime
        return try complete(local: local, timings: t, start: start, backwardDone: backwardDone, learningRate: learningRate)
    }

    /// After the last backward: the rest of the exchange, clipping, and (when the summed gradients
    /// are finite) the update.
    private func complete(local: BatchStatistics, timings: Timings, start: Double, backwardDone: Double, learningRate: Double) throws -> Outcome {
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        var t = timings
        let exchanged = try exchange.finish()
        var summed = clock()
        var updated = exchanged.finite && exchanged.lossSum.isFinite && exchanged.examples > 0
        var gradientNorm: Double? = nil
        var gatherTime = 0.0
        if updated {
            // The exchanged gradient is a sum over the global batch: the optimizer averages it.
            var scale = 1 / Double(exchanged.examples)
            if maxGradientNorm != nil {
                let norm = try globalNorm() * scale
                gradientNorm = norm
                // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
                if let maxGradientNorm, norm.isFinite { scale *= min(1, maxGradientNorm / (norm + 1e-6)) }
                if !norm.isFinite { updated = false }
            }
            summed = clock()
            if updated {
                optimizer.step(parameters: model.parameters, gradientsOfShard: exchange.gradientsOfShard,
                               gradientScale: Float(scale), learningRate: learningRate)
                let updateDone = clock()
                try exchange.afterUpdate(model.parameters)
                gatherTime = clock() - updateDone
                t.optimizer = updateDone - summed
            }
        }
        t.exposedCommunication += summed - backwardDone + gatherTime
        t.exchange = exchange.finishTimings
        t.total = clock() - start
        return Outcome(exchanged: exchanged, local: local, updated: updated, gradientNorm: gradientNorm, timings: t)
    }

    /// The L2 norm of the summed gradient: this rank's block (all of it unsharded), and with
    /// sharding one more scalar sum over the ranks.
    private func globalNorm() throws -> Double {
        var squares = [sumOfSquares(exchange.gradientsOfShard, count: exchange.shard.count)]
        if exchange.shards != nil { try squares.withUnsafeMutableBufferPointer { try exchange.comm.allreduceSum($0) } }
        return squares[0].squareRoot()
    }
}
