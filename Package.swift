// swift-tools-version:5.9
import PackageDescription

// Numeric targets are optimised even in debug builds: `swift test` trains real models across
// several mpirun ranks, and unoptimised Swift loops are 20-50x slower than -O.
let optimisedInDebug: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]

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
                swiftSettings: optimisedInDebug),
        .target(name: "FineTuneDistributed", dependencies: ["FineTuneCore", "COpenMPI"],
                swiftSettings: optimisedInDebug),
        .target(name: "FineTuneTrainer", dependencies: ["FineTuneCore", "FineTuneDistributed"],
                swiftSettings: optimisedInDebug),
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
