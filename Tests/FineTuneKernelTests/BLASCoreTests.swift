@testable import FineTuneKernels
import Foundation
import XCTest

/// Which OpenBLAS kernel set a CPU should run: cpuid features and OpenBLAS's own choice in, the
/// decision out.
final class BLASCoreTests: XCTestCase {
    func cpu(_ vendor: String, _ family: Int, _ model: Int, avx2: Bool = false, avx512: Bool = false, bf16: Bool = false) -> CPUFeatures {
        var c = CPUFeatures(vendor: vendor, family: family, model: model)
        c.sse3 = true
        c.avx = avx2 || avx512; c.fma = avx2 || avx512; c.avx2 = avx2 || avx512
        c.avx512f = avx512; c.avx512bw = avx512; c.avx512vl = avx512; c.avx512dq = avx512; c.avx512bf16 = bf16
        return c
    }

    func testTheDetectionTable() {
        let intel = "GenuineIntel", amd = "AuthenticAMD"
        let rows: [(CPUFeatures, openblas: String, expected: BLASCorePolicy.Decision, best: String)] = [
            // The Xeon of the issue (family 6 model 207, AVX-512 with BF16): OpenBLAS 0.3.21 falls back to Prescott.
            (cpu(intel, 6, 207, avx512: true, bf16: true), "Prescott", .switchTo("Cooperlake"), "Cooperlake"),
            (cpu(intel, 6, 85, avx512: true), "Prescott", .switchTo("SkylakeX"), "SkylakeX"),
            (cpu(intel, 6, 85, avx512: true), "Haswell", .switchTo("SkylakeX"), "SkylakeX"),
            (cpu(intel, 6, 85, avx512: true), "SkylakeX", .keep, "SkylakeX"),
            (cpu(intel, 6, 63, avx2: true), "Haswell", .keep, "Haswell"),
            (cpu(intel, 6, 63, avx2: true), "Prescott", .switchTo("Haswell"), "Haswell"),
            (cpu(intel, 6, 63, avx2: true), "Sandybridge", .switchTo("Haswell"), "Haswell"),
            // AMD Zen 3 (this project's VM) and Zen 4 (AVX-512 with BF16).
            (cpu(amd, 25, 1, avx2: true), "Zen", .keep, "Zen"),
            (cpu(amd, 25, 1, avx2: true), "Prescott", .switchTo("Zen"), "Zen"),
            (cpu(amd, 25, 1, avx2: true), "Haswell", .keep, "Zen"),
            (cpu(amd, 25, 17, avx512: true, bf16: true), "Cooperlake", .keep, "Cooperlake"),
            (cpu(amd, 25, 17, avx512: true, bf16: true), "Zen", .switchTo("Cooperlake"), "Cooperlake"),
            // Nothing faster to offer, or a name the table does not rank.
            (cpu(intel, 6, 23), "Penryn", .keep, "Prescott"),
            (cpu(intel, 6, 63, avx2: true), "Unknown", .keep, "Haswell"),
        ]
        for (cpu, openblas, expected, best) in rows {
            XCTAssertEqual(BLASCorePolicy.decide(openblas: openblas, cpu: cpu), expected, "\(cpu.summary), OpenBLAS \(openblas)")
            XCTAssertEqual(BLASCorePolicy.best(for: cpu).core, best, cpu.summary)
        }
        // AVX-512 without all four of F/BW/VL/DQ is not enough for the SkylakeX kernels.
        var partial = cpu(intel, 6, 87, avx2: true)
        partial.avx512f = true
        XCTAssertEqual(BLASCorePolicy.best(for: partial).core, "Haswell")
    }

    /// cpuid on this machine agrees with what the kernel reports in /proc/cpuinfo.
    func testCPUIDAgreesWithProcCPUInfo() throws {
        #if arch(x86_64)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flagsLine = try XCTUnwrap(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") })
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        let c = CPUFeatures.current()
        XCTAssertEqual(c.avx2, flags.contains("avx2"))
        XCTAssertEqual(c.fma, flags.contains("fma"))
        XCTAssertEqual(c.hasAVX512, flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]))
        let family = cpuinfo.split(separator: "\n").first { $0.hasPrefix("cpu family") }?.split(separator: ":").last
        XCTAssertEqual(c.family, family.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) })
        #else
        throw XCTSkip("cpuid is x86-64 only")
        #endif
    }

    func testTheLoadedKernelsComputeASmallProductRight() {
        XCTAssertTrue(BLASSetup.sgemmAgreesWithLoop(), "OpenBLAS \(OpenBLAS.coreName)")
    }
}
