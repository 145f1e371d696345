import FineTuneIO
import FineTuneKernels
import Foundation

/// The output folder of a run, guarded so that no run's work is lost to another: one run at a
/// time holds it (a lock), a fresh run does not silently replace an earlier one, and a run never
/// writes into the model folder it starts from. Rank 0 only (it is the one that writes).
public enum RunFolder {
    /// What a run writes into its folder; a folder holding any of these holds a run.
    public static let artefacts = ["checkpoints", "best", "final", "metrics.jsonl", "run.json", "training_config.json",
                                   "report.html", "tensorboard"]
    /// The lock file: held (flock) for the run's life; it names the holder for a refused second run.
    public static let lockName = ".finetune-dist.lock"

    /// The run artefacts `path` holds, in the order of `artefacts`.
    public static func earlierRun(in path: String) -> [String] {
        artefacts.filter { FileManager.default.fileExists(atPath: "\(path)/\($0)") }
    }

    /// Refuses an --output that is the model folder or lies inside it (the run's files would mix with
    /// the model's), and with --overwrite a model folder inside the run's artefacts (it would be deleted).
    public static func checkPlacement(output: String, model: String, overwrite: Bool) throws {
        guard !model.isEmpty else { return }
        let out = canonical(output), folder = canonical(model)
        if out == folder {
            throw FineTuneError("--output \(output) is the model folder --model \(model): the run's checkpoints, best/ and final/ would be " +
                                "written among the model's files; choose another --output")
        }
        if out.hasPrefix(folder + "/") {
            throw FineTuneError("--output \(output) lies inside the model folder --model \(model); choose an --output outside it")
        }
        if overwrite, let artefact = artefacts.first(where: { folder == "\(out)/\($0)" || folder.hasPrefix("\(out)/\($0)/") }) {
            throw FineTuneError("--model \(model) lies in \(output)/\(artefact), which --overwrite would delete; copy it elsewhere first or choose another --output")
        }
    }

    /// A fresh run (not --resume) into a folder that holds a run: refused, or with `overwrite` the
    /// earlier run's artefacts are deleted (other files stay).
    public static func prepareFresh(_ path: String, overwrite: Bool, newestCheckpoint: Int?, note: (String) -> Void) throws {
        let found = earlierRun(in: path)
        guard !found.isEmpty else { return }
        if !overwrite {
            let listed = found.map { $0 == "checkpoints" && newestCheckpoint != nil ? "checkpoints (newest: step \(newestCheckpoint!))" : $0 }
            throw FineTuneError("\(path): already holds a run (\(listed.joined(separator: ", "))); pass --resume to continue it, " +
                                "--overwrite to replace it, or choose another --output")
        }
        for artefact in found {
            do { try FileManager.default.removeItem(atPath: "\(path)/\(artefact)") } catch {
                throw FineTuneError("--overwrite: cannot delete \(path)/\(artefact): \(error.localizedDescription)")
            }
        }
        note("--overwrite: deleted the earlier run's \(found.joined(separator: ", ")) in \(path)")
    }

    static func canonical(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }
}

/// An exclusive lock on a run folder for the life of this process (flock: the kernel releases it
/// when the process ends, however it ends). The file holds the holder's host, PID and start time.
public final class RunFolderLock {
    private let descriptor: Int32
    public let path: String

    /// Takes the lock of `folder`, or throws naming the run that holds it.
    public init(folder: String) throws {
        path = "\(folder)/\(RunFolder.lockName)"
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw FineTuneError("--output \(folder): cannot create the lock file \(RunFolder.lockName): \(String(cString: strerror(errno)))")
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let busy = errno == EWOULDBLOCK
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(descriptor)
            guard busy else { throw FineTuneError("--output \(folder): cannot lock the folder: \(String(cString: strerror(errno)))") }
            throw FineTuneError("--output \(folder): another run is using this folder (\(holder.isEmpty ? "holder unknown" : holder)); " +
                                "wait for it to end, stop it, or choose another --output")
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let text = "host \(String(cString: host)), PID \(getpid()), started \(ISO8601DateFormatter().string(from: Date()))\n"
        ftruncate(descriptor, 0)
        _ = text.utf8CString.withUnsafeBufferPointer { pwrite(descriptor, $0.baseAddress, $0.count - 1, 0) }
    }

    /// Releases the lock and removes the file (a run that ends leaves no lock file behind).
    public func release() {
        unlink(path)
        close(descriptor)
    }
}
