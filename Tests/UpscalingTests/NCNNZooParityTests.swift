import Foundation
import Models
import Tensor
import Testing
@testable import Upscaling

/// The general ncnn runner (and, for RRDBNet graphs, the specialised engine) against the `ncnn` wheel on a real photo
/// crop, for every catalog model whose files are installed on the model search path (`$DREAMSR_MODELS_DIR`,
/// ./models, ...; `dreamsr models fetch all` installs them). Fixtures: tools/make_ncnn_zoo_fixtures.py.
@Suite("ncnn model zoo: parity with the ncnn wheel", .timeLimit(.minutes(10)))
struct NCNNZooParityTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/ncnn_zoo")

    struct Fixture {
        let stem: String
        let scale: Int
        let pad: Int
        let inputSize: Int
        let min: Float
        let max: Float
    }

    static func index() throws -> (crop: Int, stored: Int, input: [Float], models: [Fixture]) {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("index.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let crop = try #require(json["crop"] as? Int), stored = try #require(json["stored"] as? Int)
        let name = try #require(json["input"] as? String)
        let bytes = try Data(contentsOf: fixtures.appendingPathComponent(name))
        try #require(bytes.count == 3 * stored * stored * 4, "input fixture size")
        let input = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let models = try #require(json["models"] as? [String: [String: Any]])
        let list = try models.keys.sorted().map { stem in
            let m = models[stem]!
            return Fixture(stem: stem, scale: try #require(m["scale"] as? Int), pad: try #require(m["pad"] as? Int),
                           inputSize: try #require(m["input_size"] as? Int),
                           min: Float(try #require(m["min"] as? Double)), max: Float(try #require(m["max"] as? Double)))
        }
        return (crop, stored, input, list)
    }

    /// The centre `n` x `n` of the stored `[3, stored, stored]` crop.
    static func centre(_ input: [Float], stored: Int, n: Int) -> Tensor {
        let o = (stored - n) / 2
        return Tensor(shape: [1, 3, n, n]) { i in
            let c = i / (n * n), y = (i / n) % n, x = i % n
            return input[(c * stored + y + o) * stored + x + o]
        }
    }

    @Test("every installed model matches ncnn within 1e-3 of its output range; the catalog's scale and pad agree")
    func parity() throws {
        let (crop, stored, input, fixtures) = try Self.index()
        #expect(!fixtures.isEmpty)
        var ran: [String] = [], skipped: [String] = []
        for f in fixtures {
            let model = try #require(ModelCatalog.models.first { $0.file.stem == f.stem }, "\(f.stem) is not in the catalog")
            #expect(model.scale == f.scale, "\(model.name): catalog scale \(model.scale), ncnn \(f.scale)")
            #expect(model.networkPad == f.pad, "\(model.name): catalog pad \(model.networkPad), ncnn \(f.pad)")
            guard let located = ModelLocator.installed(model) else {
                skipped.append(model.name)
                continue
            }
            let bytes = try Data(contentsOf: Self.fixtures.appendingPathComponent("\(f.stem).f32"))
            let side = f.scale * crop
            try #require(bytes.count == 3 * side * side * 4, "\(f.stem) fixture size")
            let expected = bytes.withUnsafeBytes { Tensor(shape: [1, 3, side, side], values: Array($0.bindMemory(to: Float.self))) }
            let x = Self.centre(input, stored: stored, n: f.inputSize)
            let limit = 1e-3 * Swift.max(f.max - f.min, 1e-3)
            let graph = try NCNNGraph(paramPath: located.paramPath, binPath: located.binPath)
            let out = try graph.forward(x)
            #expect(out.shape == expected.shape, "\(model.name): \(out.shape)")
            let err = out.shape == expected.shape ? out.maxAbsDifference(expected) : .infinity
            var line = "\(model.name): general runner max abs \(err) (limit \(limit))"
            #expect(err <= limit, "\(model.name): general runner max abs error \(err) > \(limit)")
            if model.networkPad == 0, let rrdb = try? RealESRGAN(paramPath: located.paramPath, binPath: located.binPath) {
                let e2 = try rrdb.forward(x).maxAbsDifference(expected)
                line += ", rrdbnet engine \(e2)"
                #expect(e2 <= limit, "\(model.name): RRDBNet engine max abs error \(e2) > \(limit)")
            }
            print(line)
            ran.append(model.name)
        }
        print("ncnn zoo parity: ran \(ran.count) (\(ran.joined(separator: ", "))); skipped \(skipped.count) not installed"
              + (skipped.isEmpty ? "" : " (\(skipped.joined(separator: ", "))): `dreamsr models fetch all` installs them"))
        #expect(!ran.isEmpty, "no fixture model is installed (realesrgan-x4plus comes with scripts/fetch-models.sh)")
    }
}
