import CSystem

/// What the CPU offers, from cpuid (x86-64): the vendor, family and model, and the vector
/// extensions OpenBLAS's kernel sets use, each counted only when the operating system also saves
/// the registers it needs (xgetbv).
public struct CPUFeatures: Equatable, Sendable, Codable {
    public var vendor: String
    public var family: Int
    public var model: Int
    public var sse3 = false, avx = false, fma = false, avx2 = false
    public var avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512bf16 = false

    public init(vendor: String, family: Int, model: Int) { self.vendor = vendor; self.family = family; self.model = model }

    public var isAMD: Bool { vendor == "AuthenticAMD" || vendor == "HygonGenuine" }
    /// AVX-512 Foundation, Byte/Word, Vector Length and Doubleword/Quadword: what OpenBLAS's SkylakeX kernels need.
    public var hasAVX512: Bool { avx512f && avx512bw && avx512vl && avx512dq }

    /// "GenuineIntel family 6 model 207: AVX-512 F/BW/VL/DQ + BF16, AVX2, FMA"
    public var summary: String {
        var extensions: [String] = []
        if hasAVX512 { extensions.append("AVX-512 F/BW/VL/DQ" + (avx512bf16 ? " + BF16" : "")) }
        if avx2 { extensions.append("AVX2") }
        if fma { extensions.append("FMA") }
        if avx && !avx2 { extensions.append("AVX") }
        if extensions.isEmpty { extensions.append(sse3 ? "SSE3" : "no AVX") }
        return "\(vendor) family \(family) model \(model): \(extensions.joined(separator: ", "))"
    }

    /// This machine's CPU.
    public static func current() -> CPUFeatures {
        var r: [UInt32] = [0, 0, 0, 0]
        guard ftd_cpuid(0, 0, &r) != 0 else { return CPUFeatures(vendor: "not x86", family: 0, model: 0) }
        let maxLeaf = r[0]
        let vendor = [r[1], r[3], r[2]].flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
        var cpu = CPUFeatures(vendor: String(decoding: vendor, as: UTF8.self), family: 0, model: 0)
        guard maxLeaf >= 1 else { return cpu }
        _ = ftd_cpuid(1, 0, &r)
        let eax = r[0], ecx = r[2]
        let baseFamily = Int((eax >> 8) & 0xF), baseModel = Int((eax >> 4) & 0xF)
        cpu.family = baseFamily == 0xF ? baseFamily + Int((eax >> 20) & 0xFF) : baseFamily
        cpu.model = (baseFamily == 0x6 || baseFamily == 0xF) ? baseModel | (Int((eax >> 16) & 0xF) << 4) : baseModel
        cpu.sse3 = ecx & 1 != 0
        let osxsave = ecx & (1 << 27) != 0
        let xcr0 = osxsave ? ftd_xgetbv0() : 0
        let osAVX = xcr0 & 0x6 == 0x6, osAVX512 = osAVX && xcr0 & 0xE0 == 0xE0
        cpu.avx = osAVX && ecx & (1 << 28) != 0
        cpu.fma = osAVX && ecx & (1 << 12) != 0
        guard maxLeaf >= 7 else { return cpu }
        _ = ftd_cpuid(7, 0, &r)
        let ebx = r[1], maxSubleaf = r[0]
        cpu.avx2 = osAVX && ebx & (1 << 5) != 0
        cpu.avx512f = osAVX512 && ebx & (1 << 16) != 0
        cpu.avx512dq = osAVX512 && ebx & (1 << 17) != 0
        cpu.avx512bw = osAVX512 && ebx & (1 << 30) != 0
        cpu.avx512vl = osAVX512 && ebx & (1 << 31) != 0
        if maxSubleaf >= 1 {
            _ = ftd_cpuid(7, 1, &r)
            cpu.avx512bf16 = osAVX512 && r[0] & (1 << 5) != 0
        }
        return cpu
    }
}

/// Which of OpenBLAS's kernel sets (its "cores", as `OPENBLAS_CORETYPE` names them) suits a CPU.
/// OpenBLAS picks one when the library loads, from a table of CPU models it knows; on a model it
/// does not know it falls back to a generic set (Prescott: SSE3, about a third of the speed).
public enum BLASCorePolicy {
    /// Kernel sets by the instructions they need: a higher level is a faster set on a CPU that has them.
    static let levels: [String: Int] = [
        "katmai": 0, "coppermine": 0, "northwood": 0, "banias": 0, "athlon": 0, "opteron": 0,
        "prescott": 1, "core2": 1, "penryn": 1, "dunnington": 1, "nehalem": 1, "atom": 1, "nano": 1, "opteron_sse3": 1,
        "barcelona": 1, "bobcat": 1,
        "sandybridge": 2, "bulldozer": 2, "piledriver": 2, "steamroller": 2, "excavator": 2,
        "haswell": 3, "zen": 3,
        "skylakex": 4, "cooperlake": 5, "sapphirerapids": 6,
    ]

    /// The level of a kernel set (case-insensitive), nil for a name this table does not know.
    public static func level(_ core: String) -> Int? { levels[core.lowercased()] }

    /// The fastest kernel set the CPU can run, and why.
    public static func best(for cpu: CPUFeatures) -> (core: String, why: String) {
        if cpu.hasAVX512 {
            return cpu.avx512bf16 ? ("Cooperlake", "AVX-512 F/BW/VL/DQ with BF16") : ("SkylakeX", "AVX-512 F/BW/VL/DQ")
        }
        if cpu.avx2 && cpu.fma { return cpu.isAMD ? ("Zen", "AVX2 + FMA, AMD") : ("Haswell", "AVX2 + FMA") }
        if cpu.avx { return ("Sandybridge", "AVX") }
        return ("Prescott", cpu.sse3 ? "SSE3 only" : "no AVX")
    }

    public enum Decision: Equatable, Sendable {
        /// OpenBLAS's own choice is as good as the CPU allows (or a set this table does not rank).
        case keep
        /// Run with this set instead.
        case switchTo(String)
    }

    /// What to do when OpenBLAS chose `openblas` on `cpu`.
    public static func decide(openblas: String, cpu: CPUFeatures) -> Decision {
        let best = best(for: cpu).core
        guard let current = level(openblas), let target = level(best), current < target else { return .keep }
        return .switchTo(best)
    }
}
