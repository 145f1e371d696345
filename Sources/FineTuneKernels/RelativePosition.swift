import Foundation

// MPNet's relative position bias (T5's bidirectional buckets): one table [buckets, NH] shared by
// every layer; score (i, j) of head h gets table[bucket(j − i)][h].

/// The bucket of key position − query position, as transformers' MPNet computes it: half the
/// buckets for keys after the query, half before; in each half, distances below a quarter of
/// the buckets exactly, the rest logarithmically up to `maxDistance`. The logarithm runs in
/// Float, as torch's float32 tensors do (a Double would move some bucket edges).
public func relativePositionBucket(_ relative: Int, buckets: Int, maxDistance: Int) -> Int {
    let half = buckets / 2
    let n = -relative
    var bucket = n < 0 ? half : 0
    let distance = abs(n)
    let exact = half / 2
    if distance < exact { return bucket + distance }
    let logRatio = logf(Float(distance) / Float(exact)) / Float(log(Double(maxDistance) / Double(exact)))
    bucket += min(exact + Int(logRatio * Float(half - exact)), half - 1)
    return bucket
}

/// out[h, i, j] (NH × stride × stride; i, j < L) = table[bucket(j − i), h]   (table [buckets, NH])
@_specialize(where T == Float)
@_specialize(where T == Double)
public func relativePositionBiasForward<T: KernelScalar>(out: UnsafeMutablePointer<T>, table: UnsafePointer<T>, L: Int, stride: Int,
                                        NH: Int, buckets: Int, maxDistance: Int) {
    let bucketOf = (0..<(2 * L - 1)).map { relativePositionBucket($0 - (L - 1), buckets: buckets, maxDistance: maxDistance) }
    for h in 0..<NH {
        for i in 0..<L {
            let row = out + (h * stride + i) * stride
            for j in 0..<L { row[j] = table[bucketOf[j - i + L - 1] * NH + h] }
        }
    }
}

/// dtable[bucket(j − i), h] += dout[h, i, j]   (dout NH × stride × stride; i, j < L)
@_specialize(where T == Float)
@_specialize(where T == Double)
public func relativePositionBiasBackward<T: KernelScalar>(dtable: UnsafeMutablePointer<T>, dout: UnsafePointer<T>, L: Int, stride: Int,
                                         NH: Int, buckets: Int, maxDistance: Int) {
    let bucketOf = (0..<(2 * L - 1)).map { relativePositionBucket($0 - (L - 1), buckets: buckets, maxDistance: maxDistance) }
    for h in 0..<NH {
        for i in 0..<L {
            let row = dout + (h * stride + i) * stride
            for j in 0..<L { dtable[bucketOf[j - i + L - 1] * NH + h] += row[j] }
        }
    }
}
