// swift-tools-version:5.9
import PackageDescription

import Foundation

// The CPU the kernels are compiled for. Swift's default for x86-64 is the 2003 baseline (SSE2:
// 4-wide vectors, no FMA), which leaves the elementwise kernels and AdamW 1.5-2x slower than they
// need be. When the building machine has AVX2 and FMA (every x86 server since 2013-2015), the
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

// Only the kernels are optimised in debug builds (`swift test` trains real models across several
// mpirun ranks, and unoptimised numeric loops are 20-50x slower than -O); everything else stays
// debuggable. The kernels are specialised for Float and Double inside their own module
// (`@_specialize`), so an unoptimised caller still runs optimised code.
let kernelSettings: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]
    + (targetCPUFlags().isEmpty ? [] : [.unsafeFlags(targetCPUFlags())])

let package = Package(
    name: "finetune-dist",
    products: [
        .executable(name: "finetune-dist", targets: ["finetune-dist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries and header-only shims for what Swift cannot import directly.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "COpenMPI", path: "Sources/COpenMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CSystem", path: "Sources/CSystem"),

        // Flat buffers and views, the BLAS wrapper, forward/backward kernel pairs, randomness.
        .target(name: "FineTuneKernels",
                dependencies: ["COpenBLAS", "CSystem", .product(name: "Numerics", package: "swift-numerics")],
                swiftSettings: kernelSettings),
        // The one JSON path: a strict reader (duplicate keys, NaN and syntax errors named with their
        // place), typed values, and their decoding into Decodable structs and encoding.
        .target(name: "FineTuneJSON", dependencies: ["FineTuneKernels"]),
        // Parameter layouts with shapes, MLP, BERT, losses, optimizers, schedules.
        .target(name: "FineTuneModels", dependencies: ["FineTuneKernels", "FineTuneJSON"]),
        // Safetensors, model folders and their tensor-name map, tokenizer, data readers, atomic
        // files, the checkpoint format.
        .target(name: "FineTuneIO", dependencies: ["FineTuneJSON", "FineTuneModels", .product(name: "Crypto", package: "swift-crypto")]),
        // Communicators (MPI, single process, in-process threads), sharding, the gradient exchange.
        .target(name: "FineTuneDistributed", dependencies: ["FineTuneKernels", "COpenMPI", "CSystem"]),
        // Configuration, the training step, evaluation, early stopping, checkpoints, events.
        .target(name: "FineTuneTrainer", dependencies: ["FineTuneKernels", "FineTuneJSON", "FineTuneModels", "FineTuneIO", "FineTuneDistributed"]),
        // The executable: argument parsing (and --config files) only.
        .executableTarget(name: "finetune-dist",
                          dependencies: ["FineTuneKernels", "FineTuneJSON", "FineTuneModels", "FineTuneIO", "FineTuneDistributed", "FineTuneTrainer",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Yams", package: "Yams")]),
        // libFuzzer targets for the file readers (launch/fuzz.sh); a plain build makes their replayer.
        .executableTarget(name: "finetune-fuzz", dependencies: ["FineTuneKernels", "FineTuneJSON", "FineTuneModels", "FineTuneIO"]),

        // Ranks as threads of one process (InProcessGroup), for tests of what sits above the communicator.
        .target(name: "FineTuneTestSupport", dependencies: ["FineTuneKernels", "FineTuneDistributed"], path: "Tests/FineTuneTestSupport"),

        .testTarget(name: "FineTuneKernelTests", dependencies: ["FineTuneKernels"]),
        .testTarget(name: "FineTuneModelTests", dependencies: ["FineTuneKernels", "FineTuneJSON", "FineTuneModels", "FineTuneIO"]),
        .testTarget(name: "FineTuneIOTests", dependencies: ["FineTuneKernels", "FineTuneJSON", "FineTuneModels", "FineTuneIO"]),
        .testTarget(name: "FineTuneDistributedTests", dependencies: ["FineTuneKernels", "FineTuneDistributed", "FineTuneTestSupport"]),
        .testTarget(name: "FineTuneTrainerTests",
                    dependencies: ["FineTuneKernels", "FineTuneModels", "FineTuneIO", "FineTuneDistributed", "FineTuneTrainer", "finetune-dist",
                                   "FineTuneTestSupport"]),
        .testTarget(name: "FineTuneIntegrationTests",
                    dependencies: ["finetune-dist", "FineTuneKernels", "FineTuneModels", "FineTuneIO", "FineTuneTrainer"]),
    ]
)
