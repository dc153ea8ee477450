import Foundation
import Testing
import Models
import Tensor

/// Paths relative to this package (tests run from the package root, but do not rely on it).
enum RealESRGANTestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures/realesrgan")

    /// The real x4plus weights: $DREAMSR_MODELS_DIR or <package>/models. Missing weights are a test FAILURE with
    /// instructions, never a skip (CI runs scripts/fetch-models.sh before the tests).
    private static let loaded: Result<RealESRGAN, any Error> = Result {
        let env = ProcessInfo.processInfo.environment[RealESRGAN.modelsDirEnvironmentKey]
        let dir = env.flatMap { $0.isEmpty ? nil : $0 } ?? packageRoot.appendingPathComponent("models").path
        return try RealESRGAN(modelPath: dir)
    }

    /// Loaded once for all tests.
    static func realModel() throws -> RealESRGAN {
        switch loaded {
        case .success(let model): return model
        case .failure(let e):
            if let e = e as? RealESRGANError, e.code == .modelNotFound {
                let note = "Real-ESRGAN weights are missing: run scripts/fetch-models.sh (from the package root) "
                    + "before the tests. \(e.message)"
                Issue.record(Comment(rawValue: note))
            }
            throw e
        }
    }
}

@Suite("Real-ESRGAN x4plus parity with ncnn")
struct RealESRGANParityTests {
    @Test("64x64 fixture: output matches the ncnn wheel (float32) within 1e-4")
    func parityWithNCNN() throws {
        let model = try RealESRGANTestPaths.realModel()
        #expect(model.scale == 4)
        #expect(model.blockCount == 23)
        let inURL = RealESRGANTestPaths.fixtures.appendingPathComponent("input_u8_3x64x64.bin")
        let outURL = RealESRGANTestPaths.fixtures.appendingPathComponent("output_f32_3x256x256.bin")
        let inBytes = try Data(contentsOf: inURL)
        let outBytes = try Data(contentsOf: outURL)
        try #require(inBytes.count == 3 * 64 * 64 && outBytes.count == 3 * 256 * 256 * 4,
                     "fixture files have the wrong size; regenerate with tools/make_realesrgan_fixture.py")
        let input = Tensor(shape: [1, 3, 64, 64]) { Float(inBytes[$0]) / 255 }
        let expected = outBytes.withUnsafeBytes { Tensor(float32Bytes: $0, shape: [1, 3, 256, 256]) }
        let output = try model.forward(input)
        #expect(output.shape == [1, 3, 256, 256])
        let err = output.maxAbsDifference(expected)
        var sum: Double = 0
        for i in 0..<output.count { sum += Double(abs(output[flat: i] - expected[flat: i])) }
        let mean = sum / Double(output.count)
        print("Real-ESRGAN parity: max abs error \(err) (limit 1e-4), mean abs error \(mean)")
        #expect(err <= 1e-4, "max abs error \(err) exceeds 1e-4")
        #expect(mean < 1e-5, "mean abs error \(mean)")
    }

    @Test("non-multiple-of-4 sizes run and keep the 4x shape")
    func oddSize() throws {
        let model = try RealESRGANTestPaths.realModel()
        let input = Tensor(shape: [1, 3, 7, 10]) { Float($0 % 17) / 16 }
        let out = try model.forward(input)
        #expect(out.shape == [1, 3, 28, 40])
        #expect(out.toArray().allSatisfy { $0.isFinite })
    }
}
