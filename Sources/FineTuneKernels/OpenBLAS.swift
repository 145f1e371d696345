import COpenBLAS
import Foundation

/// OpenBLAS facts for the run's provenance and the thread budget.
public enum OpenBLAS {
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threads: Int { Int(openblas_get_num_threads()) }
    public static var config: String { String(cString: openblas_get_config()) }
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// Single-thread sgemm rate in GFLOP/s: n×n×n products after a warm-up, the median of `repeats`.
    /// OpenBLAS's thread count is set to 1 for the measurement and restored after it.
    public static func singleThreadSgemmGFLOPS(n: Int = 1024, repeats: Int = 5) -> Double {
        let saved = threads
        setThreads(1)
        defer { setThreads(saved) }
        let a = FlatBuffer<Float>(count: n * n), b = FlatBuffer<Float>(count: n * n), c = FlatBuffer<Float>(count: n * n)
        for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1 }
        func once() -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            Float.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a.base, lda: n, b: b.base, ldb: n, beta: 0, c: c.base, ldc: n)
            return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        _ = once()
        let times = (0..<repeats).map { _ in once() }.sorted()
        return 2 * Double(n * n * n) / times[repeats / 2] / 1e9
    }
}
