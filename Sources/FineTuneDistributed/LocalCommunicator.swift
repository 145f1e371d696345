import FineTuneKernels
import Foundation

/// A single-process communicator: every collective is the identity.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allreduce(_ values: inout [Int64], op: ReductionOp) throws {}
    public func startAllreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>, algorithm: AllreduceAlgorithm) throws -> PendingReduction { PendingReduction.completed("") }
    public func test(_ pending: PendingReduction) throws -> Bool { try pending.advance() }
    public func startReduceScatterSum(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int], into block: UnsafeMutablePointer<Float>,
                                      algorithm: AllreduceAlgorithm) throws -> PendingReduction {
        if let base = buffer.baseAddress { block.update(from: base, count: counts[0]) }
        return PendingReduction.completed("")
    }
    public func allgatherInPlace(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {}
    public func gather(_ block: UnsafeBufferPointer<Float>, counts: [Int], into destination: UnsafeMutablePointer<Float>?, root: Int) throws {
        if let destination, let base = block.baseAddress { destination.update(from: base, count: counts[0]) }
    }
    public func wait(_ pending: PendingReduction) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func allgather(_ bytes: [UInt8]) throws -> [UInt8] { bytes }
    public func nodeAllgather(_ bytes: [UInt8]) throws -> [UInt8] { bytes }
    public func barrier() throws {}
    public func abort(message: String, code: Int32) -> Never {
        printError(message)
        exit(code)
    }
    public var nodeRanks: (count: Int, index: Int) { (1, 0) }
    public var hostName: String { localHostName() }
    public var libraryVersion: String { "none (single process)" }
    public var timeout: Double = 0
    public var context: String = ""
}
