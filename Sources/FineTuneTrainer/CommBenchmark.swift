import FineTuneDistributed
import FineTuneKernels
import Foundation

/// `finetune-dist commbench`: how long a sum over the ranks takes at each size, by algorithm, and
/// what the additions alone cost here: the measurements the scaling model is fitted to.
public enum CommBenchmark {
    public struct Point: Codable, Sendable {
        public var algorithm: AllreduceAlgorithm
        public var floats: Int
        /// Median over the repeats, the slowest rank's.
        public var seconds: Double
    }

    public struct Result: Codable, Sendable {
        public var ranks: Int
        public var hosts: Int
        public var points: [Point]
        /// Seconds per float of `addInPlace` on a buffer larger than the caches (rank 0).
        public var addSecondsPerFloat: Double
        enum CodingKeys: String, CodingKey { case ranks, hosts, points, addSecondsPerFloat = "add_seconds_per_float" }
    }

    public static let defaultSizes = [1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24]

    /// Collective: every rank calls it with the same arguments.
    public static func run(comm: Communicator, sizes: [Int], repeats: Int, algorithms: [AllreduceAlgorithm] = [.ring, .mpi]) throws -> Result {
        let largest = sizes.max() ?? 0
        let buffer = FlatBuffer<Float>(count: largest)
        for i in 0..<largest { buffer[i] = Float(i % 5) }
        var points: [Point] = []
        for floats in sizes {
            for algorithm in algorithms {
                var times: [Double] = []
                for _ in 0..<(repeats + 1) {
                    try comm.barrier()
                    let start = DispatchTime.now().uptimeNanoseconds
                    try comm.wait(comm.startAllreduceSum(UnsafeMutableBufferPointer(start: buffer.base, count: floats), algorithm: algorithm))
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
                }
                var slowest = [Int64(times.dropFirst().sorted()[repeats / 2] * 1e9)]
                try comm.allreduce(&slowest, op: .max)
                points.append(Point(algorithm: algorithm, floats: floats, seconds: Double(slowest[0]) * 1e-9))
            }
        }
        // The additions of a reduction, on a buffer larger than the caches.
        let n = 1 << 24
        let x = FlatBuffer<Float>(count: n), y = FlatBuffer<Float>(count: n)
        var adds: [Double] = []
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            addInPlace(x.base, y.base, count: n)
            adds.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 / Double(n))
        }
        let hosts = Set(try comm.allgather(string: comm.hostName)).count
        return Result(ranks: comm.size, hosts: hosts, points: points, addSecondsPerFloat: adds.sorted()[2])
    }
}
