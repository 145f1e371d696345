import Foundation

/// A Hugging Face style model folder: config.json + model.safetensors.
public enum ModelFolder {
    public static func loadConfig(_ folder: String) throws -> MLPConfig {
        let path = "\(folder)/config.json"
        guard FileManager.default.fileExists(atPath: folder) else {
            throw FineTuneError("\(folder): model folder does not exist")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FineTuneError("\(path): missing (a model folder holds config.json and model.safetensors)")
        }
        return try MLPConfig(json: data, path: path)
    }

    /// Loads the folder's model. Every tensor the model has must be in the file with its shape, and
    /// the file must hold nothing the model does not use.
    public static func load(_ folder: String) throws -> MLP {
        let model = MLP(config: try loadConfig(folder))
        let file = try SafetensorsFile(path: "\(folder)/model.safetensors")
        try loadWeights(into: model.layout, parameters: model.parameters, from: file)
        return model
    }

    public static func loadWeights(into layout: ParameterLayout, parameters: FlatBuffer<Float>, from file: SafetensorsFile) throws {
        var unused = Set(file.entries.keys)
        for spec in layout.tensors {
            guard let entry = file.entries[spec.name] else {
                throw FineTuneError("\(file.path): missing tensor \(spec.name) (shape \(spec.shape))")
            }
            guard entry.shape == spec.shape else {
                throw FineTuneError("\(file.path): tensor \(spec.name) has shape \(entry.shape), the model needs \(spec.shape)")
            }
            try file.read(entry, into: parameters.base + spec.offset)
            unused.remove(spec.name)
        }
        guard unused.isEmpty else {
            throw FineTuneError("\(file.path): tensors the model does not use: \(unused.sorted().joined(separator: ", "))")
        }
    }

    /// The safetensors bytes of the named tensors of `buffer`.
    public static func safetensors(layout: ParameterLayout, buffer: FlatBuffer<Float>, metadata: [String: String] = ["format": "pt"]) -> Data {
        var writer = SafetensorsWriter()
        writer.metadata = metadata
        for spec in layout.tensors {
            writer.add(spec.name, shape: spec.shape, floats: UnsafeBufferPointer(start: buffer.base + spec.offset, count: spec.count))
        }
        return writer.serialized()
    }

    /// Writes the model into `folder` atomically (built under a temporary name, then renamed).
    public static func save(_ model: MLP, to folder: String) throws {
        try AtomicFiles.writeFolder(folder) { dir in
            try AtomicFiles.writeAndSync(model.config.jsonData(), to: "\(dir)/config.json")
            try AtomicFiles.writeAndSync(safetensors(layout: model.layout, buffer: model.parameters), to: "\(dir)/model.safetensors")
        }
    }
}
