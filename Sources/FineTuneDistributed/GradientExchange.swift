import FineTuneKernels
import Foundation

/// Sums a model's gradients over all ranks once per step, with the step's control values (loss
/// sum, example count, preemption, checkpoint and non-finite flags) riding along.
///
/// Gradients go in buckets of about `bucketBytes`, from the end of the buffer (last layers, whose
/// gradients backward finishes first) to the start. With overlap on, a bucket's non-blocking
/// allreduce starts as soon as backward reports its gradients final, and MPI is given a chance to
/// progress each time backward reports; the time left after backward is the exposed communication.
/// With overlap off, one allreduce runs after backward. The control values are one more small
/// bucket, started after the forward pass (when the loss is known).
///
/// Sparse regions (embedding tables, whose gradient is zero outside the rows of the batch's tokens)
/// are not bucketed: once backward is done, the ranks agree on the rows any of them touched (the
/// model says which: `touchedRows`, a bitmask OR-reduced over ranks) and sum just those, packed (for
/// MiniLM that skips more than half of the buffer: 11.7M of 22.7M floats). The rows no rank touched
/// are zero everywhere, which is their sum, and finite. On one rank only the touched rows are checked.
///
/// With optimizer-state sharding (ZeRO stage 1) each bucket is reduce-scattered instead (the same
/// buckets, overlapped the same way): each rank receives the summed gradients of its block of the
/// parameters only, updates those, and the parameters are then all-gathered (`afterUpdate`).
/// Sparse regions are summed as above and each rank keeps its part. The control values are then
/// summed at the end, and carry each rank's verdict on its block's finiteness.
public final class GradientExchange {
    /// The values every rank contributes to each step's sum besides the gradients.
    public enum Control: Int, CaseIterable {
        case lossSum, examples, preemptedRanks, nonFiniteRanks
        /// Rank 0 asks for a checkpoint after this step (its clock says --save-every-minutes passed).
        case checkpointRequests
    }

    public struct Settings: Sendable {
        /// Start each bucket's sum while backward still runs.
        public var overlap = true
        public var bucketBytes = 25_000_000
        /// ZeRO stage 1: reduce-scatter the gradients; each rank updates its block.
        public var shardOptimizer = false
        /// How the buckets and the embedding rows are summed.
        public var allreduce = AllreduceAlgorithm.auto
        public init() {}
    }

    /// What every rank learns from a step's exchange (the same on every rank).
    public struct Result: Sendable {
        public var lossSum: Double
        public var examples: Int
        /// Some rank asked to stop (SIGINT, SIGTERM, SIGUSR1).
        public var preempted: Bool
        /// Some rank (rank 0, by its clock) asked for a checkpoint after this step.
        public var checkpointRequested: Bool
        /// The summed gradients are all finite: a NaN or Inf on any rank makes a sum non-finite.
        public var finite: Bool
    }

    public let comm: Communicator
    let gradients: FlatBuffer<Float>
    let overlap: Bool
    let algorithm: AllreduceAlgorithm
    /// The parameters whose gradients are summed; the ones below are frozen.
    public let trainable: Range<Int>
    /// Sharded: the parameter blocks of all ranks, and this rank's summed block.
    public let shards: ParameterShards?
    let shardGradients: FlatBuffer<Float>?
    /// The parameters this rank's optimizer updates: all, or its block when sharded.
    public let shard: Range<Int>
    /// Bucket ranges in the order they start: descending offsets.
    public let buckets: [Range<Int>]
    /// A [rows, width] tensor of the buffer summed row-sparsely.
    struct SparseRegion {
        let offset: Int, rows: Int, width: Int
        var range: Range<Int> { offset..<(offset + rows * width) }
    }
    let sparseRegions: [SparseRegion]
    private let controls = FlatBuffer<Float>(count: Control.allCases.count)
    private var controlsPending: PendingReduction? = nil
    private var packed = FlatBuffer<Float>(count: 0)
    private var started = 0
    private var pending: [PendingReduction] = []
    /// Whether every value this rank contributed this step was finite before the sum (to name the
    /// rank a non-finite value came from).
    public private(set) var locallyFinite = true
    /// Floats this rank put into collectives in the last step (gradients, sparse rows and their flags, controls).
    public private(set) var floatsExchanged = 0

    /// Seconds of the parts of the last step's `finish` (what is left after backward).
    public struct FinishTimings: Sendable {
        /// Summing the embedding tables' touched rows: finding them, agreeing on them, the packed sum.
        public var sparseRows = 0.0
        /// Waiting for the dense buckets (and the control values) to complete.
        public var waiting = 0.0
        /// Checking that the sums are finite.
        public var finiteCheck = 0.0
        public init(sparseRows: Double = 0, waiting: Double = 0, finiteCheck: Double = 0) {
            self.sparseRows = sparseRows; self.waiting = waiting; self.finiteCheck = finiteCheck
        }
    }
    public private(set) var finishTimings = FinishTimings()

    /// The rows of a sparse tensor the last backward wrote (sorted, without repeats).
    let touchedRows: (TensorSpec) -> [Int]
    let sparseSpecs: [TensorSpec]
    /// The tensors summed row-sparsely.
    public var sparseTensors: [TensorSpec] { sparseSpecs }

    /// `sparse`: [rows, width] tensors summed row-sparsely, and `touchedRows`: which rows of each the
    /// step's backward wrote (every other row's gradient must be exactly zero).
    /// `trainable`: the gradients that are summed (the rest belong to frozen parameters; default all).
    public init(comm: Communicator, gradients: FlatBuffer<Float>, trainable: Range<Int>? = nil, sparse: [TensorSpec] = [],
                touchedRows: @escaping (TensorSpec) -> [Int] = { _ in [] }, settings: Settings) {
        self.comm = comm
        self.gradients = gradients
        overlap = settings.overlap
        algorithm = settings.allreduce
        let trainable = trainable ?? 0..<gradients.count
        self.trainable = trainable
        if settings.shardOptimizer {
            let shards = ParameterShards(range: trainable, ranks: comm.size)
            self.shards = shards
            shard = shards[comm.rank]
            shardGradients = FlatBuffer(count: shard.count)
        } else {
            shards = nil
            shard = trainable
            shardGradients = nil
        }
        sparseSpecs = sparse.filter { $0.shape.count == 2 && $0.offset >= trainable.lowerBound }.sorted { $0.offset > $1.offset }
        sparseRegions = sparseSpecs.map { SparseRegion(offset: $0.offset, rows: $0.shape[0], width: $0.shape[1]) }
        self.touchedRows = touchedRows
        buckets = GradientExchange.buckets(range: trainable, skipping: sparseRegions.map(\.range),
                                           size: max(1, settings.bucketBytes / MemoryLayout<Float>.stride), overlap: settings.overlap)
    }

    /// The dense stretches of `range` between the `skipping` ranges (inside it, sorted by descending
    /// offset), each cut into buckets of `size` from its end; without overlap, one bucket per stretch.
    static func buckets(range: Range<Int>, skipping: [Range<Int>], size: Int, overlap: Bool) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var end = range.upperBound
        for lower in skipping + [range.lowerBound..<range.lowerBound] {
            var stretch = lower.upperBound..<end
            if !overlap && !stretch.isEmpty { ranges.append(stretch) }
            while overlap && !stretch.isEmpty {
                ranges.append(max(stretch.lowerBound, stretch.upperBound - size)..<stretch.upperBound)
                stretch = stretch.lowerBound..<ranges.last!.lowerBound
            }
            end = lower.lowerBound
        }
        return ranges
    }

    /// Starts a step: this rank computes `examples` examples; `preempted` when it was asked to stop,
    /// `checkpoint` when it asks for a checkpoint after the step.
    public func beginStep(examples: Int, preempted: Bool, checkpoint: Bool = false) {
        started = 0
        pending = []
        controlsPending = nil
        locallyFinite = true
        floatsExchanged = controls.count
        controls.zero()
        controls[Control.examples.rawValue] = Float(examples)
        controls[Control.preemptedRanks.rawValue] = preempted ? 1 : 0
        controls[Control.checkpointRequests.rawValue] = checkpoint ? 1 : 0
    }

    /// The forward pass is done: its loss sum joins the control values, whose sum starts now
    /// (overlapped, unsharded) so it is done by the end of backward. `count`, when given, replaces
    /// the examples of `beginStep` as what the loss and gradients are averaged over (the masked
    /// tokens of masked-language modelling, known only once the inputs are masked).
    public func forwardDone(lossSum: Double, count: Int? = nil) throws {
        controls[Control.lossSum.rawValue] = Float(lossSum)
        if let count { controls[Control.examples.rawValue] = Float(count) }
        if overlap && shards == nil { controlsPending = try comm.startAllreduceSum(controls.buffer) }
    }

    /// Gradients from `offset` to the end are final: start every bucket that lies within them.
    public func ready(from offset: Int) throws {
        guard overlap else { return }
        while started < buckets.count && buckets[started].lowerBound >= offset { try startNext() }
        for p in pending { _ = try comm.test(p) }
    }

    private func startNext() throws {
        let range = buckets[started]
        started += 1
        floatsExchanged += range.count
        // Which rank's own gradients were non-finite (to name it); with one rank the sum is its own.
        if comm.size > 1 && !allFinite(gradients.base + range.lowerBound, count: range.count) { locallyFinite = false }
        let bucket = UnsafeMutableBufferPointer(start: gradients.base + range.lowerBound, count: range.count)
        if let shards, let shardGradients {
            // Rank r receives the part of the bucket inside its block (possibly nothing).
            let parts = shards.parts(of: range)
            let mine = parts[comm.rank]
            pending.append(try comm.startReduceScatterSum(bucket, counts: parts.map(\.count),
                                                          into: shardGradients.base + (mine.isEmpty ? 0 : mine.lowerBound - shard.lowerBound),
                                                          algorithm: algorithm))
        } else {
            pending.append(try comm.startAllreduceSum(bucket, algorithm: algorithm))
        }
    }

    /// Completes the exchange.
    public func finish() throws -> Result {
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        let start = clock()
        if controlsPending == nil && shards == nil { controlsPending = try comm.startAllreduceSum(controls.buffer) }
        while started < buckets.count { try startNext() }
        // The dense buckets progress inside MPI while the sparse regions are summed.
        var finite = true
        for (region, spec) in zip(sparseRegions, sparseSpecs) { finite = try sumTouchedRows(region, rows: touchedRows(spec)) && finite }
        let sparseDone = clock()
        for p in pending { try comm.wait(p) }
        pending = []
        let waited = clock()
        defer { finishTimings = FinishTimings(sparseRows: sparseDone - start, waiting: waited - sparseDone, finiteCheck: clock() - waited) }
        if let shardGradients {
            for region in sparseRegions {
                let mine = region.range.clamped(to: shard)
                (shardGradients.base + (mine.lowerBound - shard.lowerBound)).update(from: gradients.base + mine.lowerBound, count: mine.count)
            }
            let blockFinite = finite && allFinite(shardGradients.base, count: shardGradients.count)
            controls[Control.nonFiniteRanks.rawValue] = blockFinite ? 0 : 1
            try comm.allreduceSum(controls.buffer)
            finite = controls[Control.nonFiniteRanks.rawValue] == 0
        } else {
            try comm.wait(controlsPending!)
            // The sums, not the local parts: every rank sees the same values, so gives the same answer.
            for bucket in buckets where finite { finite = allFinite(gradients.base + bucket.lowerBound, count: bucket.count) }
        }
        if comm.size == 1 { locallyFinite = finite }
        return Result(lossSum: Double(controls[Control.lossSum.rawValue]), examples: Int(controls[Control.examples.rawValue].rounded()),
                      preempted: controls[Control.preemptedRanks.rawValue] > 0,
                      checkpointRequested: controls[Control.checkpointRequests.rawValue] > 0, finite: finite)
    }

    /// Sums the rows of `region` that some rank touched (`mine` are this rank's), packed; returns
    /// whether the summed rows are finite.
    private func sumTouchedRows(_ region: SparseRegion, rows mine: [Int]) throws -> Bool {
        let base = gradients.base + region.offset, width = region.width
        // One bit per row, OR-ed over the ranks: which rows anyone touched.
        var touched = [Int64](repeating: 0, count: (region.rows + 63) / 64)
        for row in mine { touched[row / 64] |= Int64(bitPattern: 1 << UInt64(row % 64)) }
        if comm.size > 1 { try comm.allreduce(&touched, op: .bitwiseOr) }
        var rows: [Int] = []
        for (w, word) in touched.enumerated() where word != 0 {
            for bit in 0..<64 where word & Int64(bitPattern: 1 << UInt64(bit)) != 0 { rows.append(w * 64 + bit) }
        }
        guard comm.size > 1 else {
            // One rank: nothing to sum; only the rows written can be non-finite.
            let finite = rows.allSatisfy { allFinite(base + $0 * width, count: width) }
            locallyFinite = locallyFinite && finite
            return finite
        }
        floatsExchanged += 2 * touched.count + rows.count * width
        if packed.count < rows.count * width { packed = FlatBuffer(count: rows.count * width) }
        for (k, row) in rows.enumerated() { (packed.base + k * width).update(from: base + row * width, count: width) }
        if !allFinite(packed.base, count: rows.count * width) { locallyFinite = false }
        try comm.wait(comm.startAllreduceSum(UnsafeMutableBufferPointer(start: packed.base, count: rows.count * width), algorithm: algorithm))
        for (k, row) in rows.enumerated() { (base + row * width).update(from: packed.base + k * width, count: width) }
        return allFinite(packed.base, count: rows.count * width)
    }

    /// The summed gradients of this rank's optimizer shard (`[0]` belongs to parameter `shard.lowerBound`).
    public var gradientsOfShard: UnsafeMutablePointer<Float> { shardGradients?.base ?? gradients.base + shard.lowerBound }

    /// Sharded: after each rank updated its block, every rank gets all the parameters.
    public func afterUpdate(_ parameters: FlatBuffer<Float>) throws {
        guard let shards else { return }
        try comm.allgatherInPlace(UnsafeMutableBufferPointer(start: parameters.base + trainable.lowerBound, count: trainable.count),
                                  counts: shards.counts)
    }
}
