import COpenMPI
import FineTuneCore
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
    }

    public func finalize() {
        MPI_Comm_free(&nodeComm)
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

    private func allreduceChunked<T>(_ buffer: UnsafeMutableBufferPointer<T>, type: MPI_Datatype?, op: MPI_Op?) throws {
        guard let base = buffer.baseAddress else { return }
        var start = 0
        while start < buffer.count {
            let n = min(chunkElements, buffer.count - start)
            try check(MPI_Allreduce(ftd_mpi_in_place(), base + start, Int32(n), type, op, world), "MPI_Allreduce")
            start += n
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try allreduceChunked(buffer, type: ftd_mpi_float(), op: ftd_mpi_sum())
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        try allreduceChunked(buffer, type: ftd_mpi_double(), op: ftd_mpi_sum())
    }

    public func allreduce(_ values: inout [Int64], op: ReductionOp) throws {
        let mpiOp: MPI_Op?
        switch op {
        case .sum: mpiOp = ftd_mpi_sum()
        case .min: mpiOp = ftd_mpi_min()
        case .max: mpiOp = ftd_mpi_max()
        }
        try values.withUnsafeMutableBufferPointer { try allreduceChunked($0, type: ftd_mpi_int64(), op: mpiOp) }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        var start = 0
        while start < buffer.count {
            let n = min(chunkElements, buffer.count - start)
            try check(MPI_Bcast(base + start, Int32(n), ftd_mpi_byte(), Int32(root), world), "MPI_Bcast")
            start += n
        }
    }

    private func allgather(_ bytes: [UInt8], comm: MPI_Comm?, ranks: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count * ranks)
        try bytes.withUnsafeBytes { send in
            try out.withUnsafeMutableBytes { receive in
                try check(MPI_Allgather(send.baseAddress, Int32(bytes.count), ftd_mpi_byte(),
                                        receive.baseAddress, Int32(bytes.count), ftd_mpi_byte(), comm), "MPI_Allgather")
            }
        }
        return out
    }

    public func allgather(_ bytes: [UInt8]) throws -> [UInt8] { try allgather(bytes, comm: world, ranks: size) }
    public func nodeAllgather(_ bytes: [UInt8]) throws -> [UInt8] { try allgather(bytes, comm: nodeComm, ranks: nodeRanks.count) }

    public func barrier() throws { try check(MPI_Barrier(world), "MPI_Barrier") }

    public func abort(message: String, code: Int32) -> Never {
        printError(message)
        MPI_Abort(world, code)
        exit(code)
    }
}
