/// A named part of an arena: `count` elements of `Element` from byte `offset`.
public struct ArenaRegion<Element>: Sendable {
    public let offset: Int
    public let count: Int
    public static var empty: ArenaRegion<Element> { ArenaRegion(offset: 0, count: 0) }
}

/// Where every region of an arena goes: a model's layout function calls `floats` and `bytes` once
/// per activation it keeps (after llm.c's activation memory: one allocation sized by one function,
/// named views into it), so the arena's size is exactly the sum of what the model uses.
public struct ArenaLayout: Sendable {
    public private(set) var byteCount = 0
    public init() {}

    public mutating func floats(_ count: Int) -> ArenaRegion<Float> { region(count) }
    public mutating func bytes(_ count: Int) -> ArenaRegion<UInt8> { region(count) }

    private mutating func region<E>(_ count: Int) -> ArenaRegion<E> {
        // 64-byte aligned: every region starts on its own cache line.
        let offset = (byteCount + 63) / 64 * 64
        byteCount = offset + count * MemoryLayout<E>.stride
        return ArenaRegion(offset: offset, count: count)
    }
}

/// One zero-initialised allocation holding every activation of a forward and backward pass.
public final class ActivationArena {
    public let byteCount: Int
    private let base: UnsafeMutableRawPointer

    public init(_ layout: ArenaLayout) {
        byteCount = layout.byteCount
        base = .allocate(byteCount: max(byteCount, 64), alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 64))
    }
    deinit { base.deallocate() }

    public subscript(region: ArenaRegion<Float>) -> UnsafeMutablePointer<Float> {
        (base + region.offset).bindMemory(to: Float.self, capacity: region.count)
    }
    public subscript(region: ArenaRegion<UInt8>) -> UnsafeMutablePointer<UInt8> {
        (base + region.offset).bindMemory(to: UInt8.self, capacity: region.count)
    }
}
