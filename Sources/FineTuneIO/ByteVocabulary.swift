/// A read-only hash table from byte strings to token ids that looks up a slice of a buffer
/// without building a key (a Swift Dictionary of [UInt8] needs an array per look-up: most of
/// WordPiece's time). Open addressing, FNV-1a, keys in one byte pool. Each key carries a flag:
/// WordPiece's word-initial pieces and its continuation pieces ("##" stripped) live side by side.
struct ByteVocabulary {
    private var pool: [UInt8] = []
    /// Per entry: start in `pool`, length, flag, id; slots hold entry index + 1 (0: empty).
    private var starts: [Int32] = [], lengths: [Int32] = [], flags: [UInt8] = [], ids: [Int32] = []
    private var slots: [Int32]
    private let mask: Int

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>, flag: UInt8) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(flag)
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// Adds `bytes` -> `id` unless the key is there already (the first id wins, as in the vocabulary).
    mutating func insert(_ bytes: [UInt8], flag: UInt8, id: Int32) {
        bytes.withUnsafeBufferPointer { key in
            if lookup(key, flag: flag) != nil { return }
            var slot = Self.hash(key, flag: flag) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            starts.append(Int32(pool.count)); lengths.append(Int32(key.count)); flags.append(flag); ids.append(id)
            pool.append(contentsOf: key)
            slots[slot] = Int32(ids.count)
        }
    }

    @inline(__always)
    func lookup(_ key: UnsafeBufferPointer<UInt8>, flag: UInt8) -> Int32? {
        var slot = Self.hash(key, flag: flag) & mask
        return pool.withUnsafeBufferPointer { pool in
            while true {
                let entry = Int(slots[slot])
                if entry == 0 { return nil }
                let e = entry - 1
                if flags[e] == flag && Int(lengths[e]) == key.count {
                    let start = Int(starts[e])
                    var same = true
                    for k in 0..<key.count where pool[start + k] != key[k] { same = false; break }
                    if same { return ids[e] }
                }
                slot = (slot + 1) & mask
            }
        }
    }
}
