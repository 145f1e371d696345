import COpenMPI
import FineTuneKernels
import Foundation

/// The Communicator over MPI_COMM_WORLD. Create one per process, on the thread that will make
/// every MPI call (MPI_Init happens here), and call `finalize()` before the process exits.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let nodeRanks: (count: Int, index: Int)
    public let hostName: String
    /// Largest element count passed to one MPI call. MPI counts are Int32; larger buffers are
    /// reduced in chunks. Injectable so a test can exercise chunking with tiny buffers.
    public let chunkElements: Int
    private let world: MPI_Comm?
    private var nodeComm: MPI_Comm?
    /// The ring allreduce's own communicator (its messages never meet any other), and the largest
    /// tag MPI allows on it.
    private var ringComm: MPI_Comm?
    private let tagUpperBound: Int
    private var ringOperations = 0
    /// Seconds any one collective may take before the job is aborted (a lost rank, a cut network).
    public var timeout: Double = 300
    /// What the run is doing, for the timeout message ("step 42").
    public var context: String = "start-up"

    public init(chunkElements: Int = Int(Int32.max)) throws {
        precondition(chunkElements > 0)
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            guard MPI_Init(nil, nil) == MPI_SUCCESS else { throw FineTuneError("MPI_Init failed") }
        }
        world = ftd_mpi_comm_world()
        // Return error codes instead of aborting inside MPI, so failures become messages.
        MPI_Comm_set_errhandler(world, ftd_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r); size = Int(s)
        self.chunkElements = chunkElements
        var node: MPI_Comm? = ftd_mpi_comm_null()
        MPI_Comm_split_type(world, ftd_mpi_comm_type_shared(), r, ftd_mpi_info_null(), &node)
        nodeComm = node
        var nr: Int32 = 0, ns: Int32 = 0
        MPI_Comm_rank(node, &nr)
        MPI_Comm_size(node, &ns)
        nodeRanks = (Int(ns), Int(nr))
        hostName = localHostName()
        var ring: MPI_Comm? = ftd_mpi_comm_null()
        MPI_Comm_dup(world, &ring)
        MPI_Comm_set_errhandler(ring, ftd_mpi_errors_return())
        ringComm = ring
        tagUpperBound = Int(ftd_mpi_tag_ub(world))
    }

    public func finalize() {
        MPI_Comm_free(&nodeComm)
        MPI_Comm_free(&ringComm)
        MPI_Finalize()
    }

    /// The Open MPI library version string.
    public var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(ftd_mpi_max_library_version_string()))
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        return String(cString: buffer).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func check(_ code: Int32, _ what: String) throws {
        guard code == MPI_SUCCESS else {
            var buffer = [CChar](repeating: 0, count: 512)
            var length: Int32 = 0
            MPI_Error_string(code, &buffer, &length)
            throw FineTuneError("rank \(rank): \(what) failed: \(String(cString: buffer))")
        }
    }

    /// Polls `advance` until it says done, against the deadline: no collective blocks forever. On
    /// expiry the whole job is aborted with a message naming the collective and the step.
    private func poll(_ what: String, started: Date, _ advance: () throws -> Bool) throws {
        var polls = 0
        while true {
            if try advance() { return }
            polls += 1
            // Spin briefly (latency), then yield the core (ranks may share cores), then sleep a little.
            if polls > 20_000 { usleep(polls > 200_000 ? 1000 : 50) } else if polls > 1000 { sched_yield() }
            if polls % 256 == 0 && Date().timeIntervalSince(started) > timeout {
                printError("finetune-dist: error: rank \(rank): \(context): \(what) did not complete within \(Int(timeout)) s " +
                           "(--collective-timeout): a rank was lost or the network is cut; aborting the job")
                // Let Open MPI's own failure detection act first: when a host is unreachable, its
                // keepalive (set by the launch scripts, ~16 s) tears the job down without that host,
                // whereas MPI_Abort now would make mpirun retransmit to the lost host for minutes.
                usleep(UInt32(min(timeout, 30) * 1_000_000))
                abort(message: "finetune-dist: rank \(rank): aborting after the timeout at \(context)", code: 1)
            }
        }
    }

    private func wait(_ request: inout MPI_Request?, _ what: String, started: Date) throws {
        try poll(what, started: started) {
            var done: Int32 = 0
            try check(MPI_Test(&request, &done, ftd_mpi_status_ignore()), what)
            return done != 0
        }
    }

    /// MPI requests as a pending operation: complete when all are (tested in order).
    /// `retaining` stays alive until then (arguments MPI reads while the operation runs).
    private func pending(_ requests: [MPI_Request?], what: String, retaining retained: AnyObject? = nil) -> PendingReduction {
        var open = requests
        return PendingReduction(what: what) { [self] in
            while var request = open.first {
                var done: Int32 = 0
                try check(MPI_Test(&request, &done, ftd_mpi_status_ignore()), what)
                if done == 0 { open[0] = request; return false }
                open.removeFirst()
            }
            _ = retained
            return true
        }
    }

    /// Starts an in-place reduction, in chunks of at most `chunkElements` (MPI counts are Int32).
    private func startReduction<T>(_ buffer: UnsafeMutableBufferPointer<T>, type: MPI_Datatype?, op: MPI_Op?, what: String) throws -> PendingReduction {
        var requests: [MPI_Request?] = []
        if let base = buffer.baseAddress {
            var start = 0
            while start < buffer.count {
                let n = min(chunkElements, buffer.count - start)
                var request: MPI_Request? = nil
                try check(MPI_Iallreduce(ftd_mpi_in_place(), base + start, Int32(n), type, op, world, &request), "MPI_Iallreduce")
                requests.append(request)
                start += n
            }
        }
        return pending(requests, what: what)
    }

    private func allreduceChunked<T>(_ buffer: UnsafeMutableBufferPointer<T>, type: MPI_Datatype?, op: MPI_Op?, what: String) throws {
        try wait(startReduction(buffer, type: type, op: op, what: what))
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try wait(startAllreduceSum(buffer, algorithm: .auto))
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        try allreduceChunked(buffer, type: ftd_mpi_double(), op: ftd_mpi_sum(), what: "allreduce of \(buffer.count) doubles")
    }

    public func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>, algorithm: AllreduceAlgorithm) throws -> PendingReduction {
        let what = "allreduce of a \(buffer.count)-float gradient bucket"
        guard size > 1, algorithm.usesRing(count: buffer.count), let base = buffer.baseAddress else {
            return try startReduction(buffer, type: ftd_mpi_float(), op: ftd_mpi_sum(), what: what)
        }
        let chunks = (0..<size).map { Sharding.slice(count: buffer.count, rank: $0, size: size) }
        let ring = try Ring(base: base, chunks: chunks, phases: [.reduceScatter, .allgather], rank: rank, comm: ringComm,
                            tag: nextRingTag(), check: check)
        return PendingReduction(what: what + " (ring)", advance: ring.advance)
    }

    /// A block of 2(N − 1) tags for one ring operation, cycling below MPI's upper bound.
    private func nextRingTag() -> Int {
        let steps = 2 * (size - 1)
        defer { ringOperations += 1 }
        return (ringOperations % max(1, tagUpperBound / steps)) * steps
    }

    /// Consecutive ranges of the given lengths.
    private func ranges(_ counts: [Int]) -> [Range<Int>] {
        var out: [Range<Int>] = [], start = 0
        for c in counts { out.append(start..<(start + c)); start += c }
        return out
    }

    public func test(_ pending: PendingReduction) throws -> Bool { try pending.advance() }

    public func wait(_ pending: PendingReduction) throws {
        try poll(pending.what, started: pending.started) { try pending.advance() }
    }

    public func startReduceScatterSum(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], into block: UnsafeMutablePointer<Float>,
                                      algorithm: AllreduceAlgorithm) throws -> PendingReduction {
        precondition(counts.allSatisfy { $0 <= Int(Int32.max) }, "a shard over Int32.max elements")
        if size > 1, algorithm.usesRing(count: buffer.count), let base = buffer.baseAddress {
            // The ring's reduce-scatter half, in place; rank r's summed chunk is then copied to `block`.
            let chunks = ranges(counts)
            let ring = try Ring(base: base, chunks: chunks, phases: [.reduceScatter], rank: rank, comm: ringComm, tag: nextRingTag(), check: check)
            let mine = chunks[rank]
            return PendingReduction(what: "reduce-scatter of \(buffer.count) gradients (ring)") {
                guard try ring.advance() else { return false }
                block.update(from: base + mine.lowerBound, count: mine.count)
                return true
            }
        }
        var request: MPI_Request? = nil
        let recvCounts = Int32Array(counts.map { Int32($0) })
        try check(MPI_Ireduce_scatter(buffer.baseAddress, block, recvCounts.base, ftd_mpi_float(), ftd_mpi_sum(), world, &request), "MPI_Ireduce_scatter")
        return pending([request], what: "reduce-scatter of \(buffer.count) gradients", retaining: recvCounts)
    }

    public func allgatherInPlace(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
        if size > 1, AllreduceAlgorithm.auto.usesRing(count: buffer.count), let base = buffer.baseAddress {
            let ring = try Ring(base: base, chunks: ranges(counts), phases: [.allgather], rank: rank, comm: ringComm, tag: nextRingTag(), check: check)
            return try poll("allgather of \(buffer.count) parameters (ring)", started: Date(), ring.advance)
        }
        var displacements: [Int32] = [0]
        for c in counts.dropLast() { displacements.append(displacements.last! + Int32(c)) }
        let recvCounts = counts.map { Int32($0) }
        var request: MPI_Request? = nil
        try recvCounts.withUnsafeBufferPointer { c in
            try displacements.withUnsafeBufferPointer { d in
                try check(MPI_Iallgatherv(ftd_mpi_in_place(), 0, ftd_mpi_float(), buffer.baseAddress, c.baseAddress, d.baseAddress,
                                          ftd_mpi_float(), world, &request), "MPI_Iallgatherv")
                try wait(&request, "allgather of \(buffer.count) parameters", started: Date())
            }
        }
    }

    public func gather(_ block: UnsafeBufferPointer<Float>, counts: [Int], into destination: UnsafeMutablePointer<Float>?, root: Int) throws {
        precondition(counts.allSatisfy { $0 <= Int(Int32.max) }, "a block over Int32.max elements")
        var displacements: [Int32] = [0]
        for c in counts.dropLast() { displacements.append(displacements.last! + Int32(c)) }
        let recvCounts = counts.map { Int32($0) }
        var request: MPI_Request? = nil
        try recvCounts.withUnsafeBufferPointer { c in
            try displacements.withUnsafeBufferPointer { d in
                try check(MPI_Igatherv(block.baseAddress, Int32(counts[rank]), ftd_mpi_float(), destination, c.baseAddress, d.baseAddress,
                                       ftd_mpi_float(), Int32(root), world, &request), "MPI_Igatherv")
                try wait(&request, "gather of \(counts.reduce(0, +)) floats to rank \(root)", started: Date())
            }
        }
    }

    public func allreduce(_ values: inout [Int64], op: ReductionOp) throws {
        let mpiOp: MPI_Op?
        switch op {
        case .sum: mpiOp = ftd_mpi_sum()
        case .min: mpiOp = ftd_mpi_min()
        case .max: mpiOp = ftd_mpi_max()
        case .bitwiseOr: mpiOp = ftd_mpi_bor()
        }
        try values.withUnsafeMutableBufferPointer { try allreduceChunked($0, type: ftd_mpi_int64(), op: mpiOp, what: "allreduce of control values") }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        let started = Date()
        var start = 0
        while start < buffer.count {
            let n = min(chunkElements, buffer.count - start)
            var request: MPI_Request? = nil
            try check(MPI_Ibcast(base + start, Int32(n), ftd_mpi_byte(), Int32(root), world, &request), "MPI_Ibcast")
            try wait(&request, "broadcast of \(buffer.count) bytes from rank \(root)", started: started)
            start += n
        }
    }

    private func allgather(_ bytes: [UInt8], comm: MPI_Comm?, ranks: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count * ranks)
        try bytes.withUnsafeBytes { send in
            try out.withUnsafeMutableBytes { receive in
                var request: MPI_Request? = nil
                try check(MPI_Iallgather(send.baseAddress, Int32(bytes.count), ftd_mpi_byte(),
                                         receive.baseAddress, Int32(bytes.count), ftd_mpi_byte(), comm, &request), "MPI_Iallgather")
                try wait(&request, "allgather", started: Date())
            }
        }
        return out
    }

    public func allgather(_ bytes: [UInt8]) throws -> [UInt8] { try allgather(bytes, comm: world, ranks: size) }
    public func nodeAllgather(_ bytes: [UInt8]) throws -> [UInt8] { try allgather(bytes, comm: nodeComm, ranks: nodeRanks.count) }

    public func barrier() throws {
        var request: MPI_Request? = nil
        try check(MPI_Ibarrier(world, &request), "MPI_Ibarrier")
        try wait(&request, "barrier", started: Date())
    }

    public func abort(message: String, code: Int32) -> Never {
        printError(message)
        MPI_Abort(world, code)
        exit(code)
    }
}

/// An Int32 array at a fixed address for as long as a non-blocking collective may read it.
final class Int32Array {
    let base: UnsafeMutablePointer<Int32>
    init(_ values: [Int32]) {
        base = .allocate(capacity: max(values.count, 1))
        base.initialize(from: values, count: values.count)
    }
    deinit { base.deallocate() }
}

/// Ring collectives (sum) over non-blocking point-to-point messages, in place. The buffer is cut
/// into one chunk per rank. Reduce-scatter: in N − 1 steps each rank sends a chunk to its right
/// neighbour and adds the one from its left, after which rank r holds chunk r summed. Allgather: in
/// N − 1 more steps the summed chunks travel round the ring. An allreduce is both; optimizer-state
/// sharding (ZeRO-1) uses the first for the gradients and the second for the parameters. Each rank
/// sends and receives (N − 1)/N of the buffer per phase: the least any algorithm can. Measured on one
/// host (2 ranks, 11M floats) the allreduce is 4x faster than Open MPI's MPI_Iallreduce and 2x faster
/// than its blocking MPI_Allreduce. Every chunk is summed in one order (from rank c + 1 round the
/// ring to rank c) and then copied, so every rank gets the same bits. `advance` never blocks: it
/// completes what MPI has delivered, adds, and posts the next step.
final class Ring {
    enum Phase { case reduceScatter, allgather }
    let base: UnsafeMutablePointer<Float>
    let chunks: [Range<Int>]
    let steps: [(send: Int, receive: Int, adds: Bool)]
    let left: Int32, right: Int32
    let comm: MPI_Comm?
    let tag: Int
    let check: (Int32, String) throws -> Void
    /// Where a reduce-scatter step receives (the largest chunk).
    let scratch: UnsafeMutablePointer<Float>
    private var step = 0
    private var requests: [MPI_Request?] = [nil, nil]

    init(base: UnsafeMutablePointer<Float>, chunks: [Range<Int>], phases: [Phase], rank: Int, comm: MPI_Comm?, tag: Int,
         check: @escaping (Int32, String) throws -> Void) throws {
        let size = chunks.count
        precondition(chunks.allSatisfy { $0.count <= Int(Int32.max) }, "a ring chunk over Int32.max elements")
        self.base = base; self.chunks = chunks
        left = Int32((rank + size - 1) % size); right = Int32((rank + 1) % size)
        self.comm = comm; self.tag = tag; self.check = check
        func index(_ k: Int) -> Int { ((k % size) + size) % size }
        var steps: [(Int, Int, Bool)] = []
        for phase in phases {
            for s in 0..<(size - 1) {
                switch phase {
                // Send chunk r − s − 1, add chunk r − s − 2: the last one added (s = N − 2) is chunk r.
                case .reduceScatter: steps.append((index(rank - s - 1), index(rank - s - 2), true))
                // Send chunk r − s (its own first), receive chunk r − s − 1.
                case .allgather: steps.append((index(rank - s), index(rank - s - 1), false))
                }
            }
        }
        self.steps = steps
        scratch = .allocate(capacity: max(1, chunks.map(\.count).max() ?? 1))
        if !steps.isEmpty { try post() }
    }
    deinit { scratch.deallocate() }

    private func post() throws {
        let (send, receive, adds) = steps[step]
        let destination = adds ? scratch : base + chunks[receive].lowerBound
        try check(MPI_Irecv(destination, Int32(chunks[receive].count), ftd_mpi_float(), left, Int32(tag + step), comm, &requests[0]),
                  "MPI_Irecv (ring)")
        try check(MPI_Isend(base + chunks[send].lowerBound, Int32(chunks[send].count), ftd_mpi_float(), right, Int32(tag + step), comm,
                            &requests[1]), "MPI_Isend (ring)")
    }

    func advance() throws -> Bool {
        while step < steps.count {
            var done: Int32 = 0
            try check(MPI_Testall(2, &requests, &done, ftd_mpi_statuses_ignore()), "ring")
            guard done != 0 else { return false }
            let (_, receive, adds) = steps[step]
            if adds { addInPlace(base + chunks[receive].lowerBound, scratch, count: chunks[receive].count) }
            step += 1
            if step < steps.count { try post() }
        }
        return true
    }
}
