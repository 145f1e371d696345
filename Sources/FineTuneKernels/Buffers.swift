import Foundation

/// One contiguous, 64-byte aligned, zero-initialised buffer of scalars. Parameters, gradients and
/// each optimizer moment live in one of these each, with the same `ParameterLayout`, so one loop
/// (or one collective) covers all tensors.
public final class FlatBuffer<T: KernelScalar> {
    public let count: Int
    public let base: UnsafeMutablePointer<T>

    public init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<T>.stride, alignment: 64)
        base = raw.bindMemory(to: T.self, capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { UnsafeMutableRawPointer(base).deallocate() }

    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: base, count: count) }
    public func zero() { base.update(repeating: 0, count: count) }
    public subscript(i: Int) -> T {
        get { base[i] }
        set { base[i] = newValue }
    }
    public var array: [T] { Array(buffer) }
    /// The first element of a tensor of this buffer's layout.
    public func at(_ tensor: TensorSpec) -> UnsafeMutablePointer<T> { base + tensor.offset }
    /// A copy of one tensor's values.
    public func values(of tensor: TensorSpec) -> [T] { Array(UnsafeBufferPointer(start: base + tensor.offset, count: tensor.count)) }
}
