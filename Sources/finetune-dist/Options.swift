import ArgumentParser
import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer

extension ScheduleKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension MonitoredMetric: ExpressibleByArgument {}
extension TaskChoice: ExpressibleByArgument {}
extension Pooling: ExpressibleByArgument {}
extension NonFinitePolicy: ExpressibleByArgument {}
extension AllreduceAlgorithm: ExpressibleByArgument {}

/// How the gradients are summed over ranks (train and bench).
struct ExchangeOptions: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Allreduce gradient buckets while backward is still running (--no-overlap: one allreduce after backward, to measure the difference).")
    var overlap = true
    @Option(help: "Gradient bucket size in MB for the overlapped allreduce.")
    var bucketMb: Double = 25
    @Flag(help: "ZeRO stage 1: reduce-scatter the gradients, each rank updates 1/N of the parameters and keeps only their optimizer state, then the parameters are all-gathered.")
    var shardOptimizer = false
    @Option(help: "How the gradients are summed: ring (point-to-point, each rank sends 2(N-1)/N of the buffer), mpi (Open MPI's MPI_Iallreduce), or auto (ring for buffers of 32Ki floats and more).")
    var allreduce: AllreduceAlgorithm = .auto

    func validate() throws {
        guard bucketMb > 0, bucketMb.isFinite else { throw ValidationError("--bucket-mb must be a positive number") }
    }

    var settings: GradientExchange.Settings {
        var s = GradientExchange.Settings()
        s.overlap = overlap
        s.bucketBytes = Int(bucketMb * 1_000_000)
        s.shardOptimizer = shardOptimizer
        s.allreduce = allreduce
        return s
    }
}

/// Splits "64,64" into [64, 64].
func parseList<T>(_ text: String, option: String, _ convert: (String) -> T?) throws -> [T] {
    if text.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
    return try text.split(separator: ",").map { part in
        guard let v = convert(part.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("\(option): \"\(part)\" is not valid in the comma-separated list \"\(text)\"")
        }
        return v
    }
}
