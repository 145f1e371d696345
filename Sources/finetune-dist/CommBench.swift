import ArgumentParser
import FineTuneDistributed
import FineTuneKernels
import FineTuneTrainer
import Foundation

struct CommBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commbench",
        abstract: "Time sums over the ranks (ring and MPI allreduce) at several sizes: what the network and shared memory here deliver.",
        discussion: """
        Run it under mpirun like train, on the hosts a training run would use. Prints the median time of \
        each sum (the slowest rank's) and the effective bandwidth 2(N-1)/N x bytes / time, and the cost of \
        the additions alone. launch/scaling.sh fits its communication model to these numbers.
        """)

    @Option(help: "Buffer sizes in floats, comma-separated.") var sizes: String = CommBenchmark.defaultSizes.map(String.init).joined(separator: ",")
    @Option(help: "Timed repetitions per size (after one untimed).") var repeats: Int = 5
    @Flag(help: "End with one JSON object on the last line.") var json = false

    func validate() throws {
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        let parsed = try parseList(sizes, option: "--sizes") { Int($0).flatMap { $0 > 0 ? $0 : nil } }
        guard !parsed.isEmpty else { throw ValidationError("--sizes needs at least one positive size") }
    }

    func run() throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator() } catch { exitOnError(error, comm: nil) }
        do {
            let r = try CommBenchmark.run(comm: comm, sizes: try parseList(sizes, option: "--sizes") { Int($0) }, repeats: repeats)
            if comm.isRoot {
                print("commbench: \(r.ranks) rank(s) on \(r.hosts) host(s); additions \(String(format: "%.3f", r.addSecondsPerFloat * 1e9)) ns per float")
                for p in r.points {
                    let moved = 2 * Double(r.ranks - 1) / Double(r.ranks) * Double(4 * p.floats)
                    print(String(format: "%-5@ %10d floats: %9.6f s  %7.2f GB/s", p.algorithm.rawValue, p.floats, p.seconds, moved / p.seconds / 1e9))
                }
                if json { print(String(decoding: try JSONEncoder().encode(r), as: UTF8.self)) }
            }
        } catch { exitOnError(error, comm: comm) }
        comm.finalize()
    }
}
