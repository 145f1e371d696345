import Foundation

/// Tests/Fixtures: small files made once by Tests/fixture-scripts (with torch), committed.
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path
