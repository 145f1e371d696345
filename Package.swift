// swift-tools-version:5.9
import PackageDescription

import Foundation

// The CPU the numeric targets are compiled for. Swift's default for x86-64 is the 2003 baseline
// (SSE2: 4-wide vectors, no FMA), which leaves the elementwise kernels and AdamW 1.5-2x slower than
// they need be. When the building machine has AVX2 and FMA (every x86 server since 2013-2015), the
// kernels are built for `haswell`. The binary then needs such a CPU wherever it runs: set
// FINETUNE_DIST_TARGET_CPU=generic for a cluster with older nodes (or any LLVM CPU name, e.g. znver3).
func targetCPUFlags() -> [String] {
    if let cpu = ProcessInfo.processInfo.environment["FINETUNE_DIST_TARGET_CPU"], !cpu.isEmpty {
        return cpu == "generic" ? [] : ["-target-cpu", cpu]
    }
    #if arch(x86_64) && os(Linux)
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
    let flags = Set(flagsLine.split(separator: " ").map(String.init))
    return flags.isSuperset(of: ["avx2", "fma", "f16c", "bmi2"]) ? ["-target-cpu", "haswell"] : []
    #else
    return []
    #endif
}

// Numeric targets are optimised even in debug builds: `swift test` trains real models across
// several mpirun ranks, and unoptimised Swift loops are 20-50x slower than -O.
let numericSettings: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]
    + (targetCPUFlags().isEmpty ? [] : [.unsafeFlags(targetCPUFlags())])

let package = Package(
    name: "finetune-dist",
    products: [
        .executable(name: "finetune-dist", targets: ["finetune-dist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "COpenMPI", path: "Sources/COpenMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "FineTuneCore",
                dependencies: ["COpenBLAS", .product(name: "Numerics", package: "swift-numerics")],
                swiftSettings: numericSettings),
        .target(name: "FineTuneDistributed", dependencies: ["FineTuneCore", "COpenMPI"],
                swiftSettings: numericSettings),
        .target(name: "FineTuneTrainer", dependencies: ["FineTuneCore", "FineTuneDistributed"],
                swiftSettings: numericSettings),
        .executableTarget(name: "finetune-dist",
                          dependencies: ["FineTuneCore", "FineTuneDistributed", "FineTuneTrainer",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "FineTuneCoreTests", dependencies: ["FineTuneCore", "FineTuneDistributed"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "FineTuneIntegrationTests",
                    dependencies: ["finetune-dist", "FineTuneCore", "FineTuneTrainer"],
                    exclude: ["Fixtures"]),
    ]
)
