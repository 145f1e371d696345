import Foundation

/// The kinds of kernel a training step is made of, for `bench`'s per-kernel breakdown. Every
/// public kernel belongs to one kind and times itself when profiling is on, so the forward and
/// backward passes that call them carry no instrumentation.
public enum KernelKind: Int, CaseIterable, Sendable {
    /// The dense layers' matrix products and bias sums (Q/K/V, attention output, feed-forward, pooler, classifier).
    case linear
    /// Q·Kᵀ, softmax, the probabilities' dropout and P·V per sequence and head, and their backward.
    case attention
    case gelu
    case layerNorm
    /// Dropout of the embeddings, the sublayer outputs and the classifier input (not attention's).
    case dropout
    /// Embedding lookups and their gradient scatter.
    case embeddings
    /// Residual sums and the zeroing of backward scratch buffers.
    case elementwise
    /// Pooling, loss, tanh and ReLU: the rest of the head and the MLP outside `linear`.
    case head
    /// The optimizer's update over the flat buffers.
    case optimizer

    public var name: String {
        switch self {
        case .linear: return "linear"
        case .attention: return "attention"
        case .gelu: return "gelu"
        case .layerNorm: return "layernorm"
        case .dropout: return "dropout"
        case .embeddings: return "embeddings"
        case .elementwise: return "elementwise"
        case .head: return "head"
        case .optimizer: return "optimizer"
        }
    }
}

/// Seconds per kernel kind.
public struct KernelTimes: Sendable, Equatable {
    public var seconds = [Double](repeating: 0, count: KernelKind.allCases.count)
    public init() {}
    public subscript(kind: KernelKind) -> Double {
        get { seconds[kind.rawValue] }
        set { seconds[kind.rawValue] = newValue }
    }
    public var total: Double { seconds.reduce(0, +) }
}

/// Kernel timing for `bench`: off by default (one predictable branch per kernel call). Training
/// is single-threaded per rank, so one process-wide accumulator serves.
public enum KernelProfiler {
    nonisolated(unsafe) public static var isEnabled = false
    nonisolated(unsafe) public static var times = KernelTimes()

    @inline(__always)
    static func start() -> UInt64 { isEnabled ? DispatchTime.now().uptimeNanoseconds : 0 }

    @inline(__always)
    static func stop(_ started: UInt64, _ kind: KernelKind) {
        guard isEnabled else { return }
        times[kind] += Double(DispatchTime.now().uptimeNanoseconds - started) * 1e-9
    }

    /// The times accumulated since the last call, and a fresh start.
    public static func take() -> KernelTimes {
        defer { times = KernelTimes() }
        return times
    }
}
