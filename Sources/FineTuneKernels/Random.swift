import RealModule

/// Counter-based randomness. Everything random in a run is a pure function of a key built from the
/// seed and *global* coordinates (epoch, step, example index), never of the rank or of how many
/// random numbers were drawn before: 1 rank and N ranks draw the same numbers, and a resumed run
/// draws what the uninterrupted one would have.

/// The SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
@inlinable
public func mix64(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Hashes a list of coordinates into one key.
@inlinable
public func combineKey(_ parts: UInt64...) -> UInt64 {
    var h: UInt64 = 0x6A09_E667_F3BC_C908
    for p in parts { h = mix64(h ^ p) }
    return h
}

/// A uniform double in [0, 1) from 53 random bits.
@inlinable
public func unitInterval(_ bits: UInt64) -> Double { Double(bits >> 11) * 0x1.0p-53 }

/// A sequential generator (SplitMix64) for things drawn in bulk from one key: a shuffle, initial weights.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { unitInterval(next()) }
    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Double {
        var u1 = nextUnit()
        while u1 <= 0 { u1 = nextUnit() }
        let u2 = nextUnit()
        return (-2 * Double.log(u1)).squareRoot() * Double.cos(2 * Double.pi * u2)
    }
}

/// Dropout randomness for one dropout site in one optimizer step.
public struct DropoutKey: Sendable {
    public let value: UInt64
    public init(seed: UInt64, step: Int, site: Int) {
        value = combineKey(seed, 0xD50F, UInt64(step), UInt64(site))
    }
    public init(value: UInt64) { self.value = value }
    @inlinable public func row(exampleIndex: Int) -> DropoutRowKey {
        DropoutRowKey(value: mix64(value ^ UInt64(bitPattern: Int64(exampleIndex))))
    }
}

public struct DropoutRowKey: Sendable {
    public let value: UInt64
    @inlinable public init(value: UInt64) { self.value = value }
    /// 64 random bits for block `index` of this row.
    @inlinable public func bits(_ index: Int) -> UInt64 { mix64(value &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03) }
}

/// The permutation of `count` examples for one epoch: Fisher-Yates driven by (seed, epoch).
public func epochPermutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var order = Array(0..<count)
    var rng = SplitMix64(seed: combineKey(seed, 0x5AFF1E, UInt64(epoch)))
    if count > 1 {
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
    }
    return order
}

/// An epoch's order of `count` examples without necessarily holding it: up to `materializedLimit`
/// examples it is `epochPermutation` (Fisher-Yates, as every run so far shuffled); above, a keyed
/// Feistel permutation computed per position, so a corpus of a hundred million windows costs no
/// 800 MB index array on every rank. Both are pure functions of (seed, epoch, count).
public struct EpochOrder: Sendable {
    /// 1 Mi examples: 8 MB of Int, the most an order may hold.
    public static let materializedLimit = 1 << 20
    public let count: Int
    private let table: [Int]?
    private let feistel: FeistelPermutation?

    public init(count: Int, seed: UInt64, epoch: Int) {
        self.count = count
        if count <= Self.materializedLimit {
            table = epochPermutation(count: count, seed: seed, epoch: epoch); feistel = nil
        } else {
            table = nil; feistel = FeistelPermutation(count: count, key: combineKey(seed, 0x5AFF1E, UInt64(epoch)))
        }
    }

    public subscript(position: Int) -> Int { table?[position] ?? feistel!.image(position) }

    /// The examples at `positions`, in order.
    public subscript(positions: Range<Int>) -> ArraySlice<Int> {
        if let table { return table[positions] }
        return ArraySlice(positions.map { feistel!.image($0) })
    }
}

/// A bijection of 0..<count: a 4-round balanced Feistel network over the smallest even number of
/// bits that holds `count`, walked until the image falls inside (fewer than 4 rounds on average).
public struct FeistelPermutation: Sendable {
    public let count: Int
    private let halfBits: Int
    private let keys: [UInt64]

    public init(count: Int, key: UInt64) {
        precondition(count > 0)
        self.count = count
        var bits = 2
        while (1 << bits) < count { bits += 2 }
        halfBits = bits / 2
        keys = (0..<4).map { combineKey(key, 0xFE15, UInt64($0)) }
    }

    public func image(_ position: Int) -> Int {
        precondition(position >= 0 && position < count)
        var x = UInt64(position)
        repeat { x = encrypt(x) } while x >= UInt64(count)
        return Int(x)
    }

    private func encrypt(_ value: UInt64) -> UInt64 {
        let mask = (UInt64(1) << UInt64(halfBits)) - 1
        var left = value >> UInt64(halfBits), right = value & mask
        for key in keys {
            let next = left ^ (mix64(right ^ key) & mask)
            left = right; right = next
        }
        return (left << UInt64(halfBits)) | right
    }
}
