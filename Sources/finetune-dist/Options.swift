import ArgumentParser
import FineTuneDistributed
import FineTuneKernels
import FineTuneModels
import FineTuneTrainer

extension AllreduceAlgorithm: ExpressibleByArgument {}

/// Splits "64,64" into [64, 64].
func parseList<T>(_ text: String, option: String, _ convert: (String) -> T?) throws -> [T] {
    if text.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
    return try text.split(separator: ",").map { part in
        guard let v = convert(part.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("\(option): \"\(part)\" is not valid in the comma-separated list \"\(text)\"")
        }
        return v
    }
}
