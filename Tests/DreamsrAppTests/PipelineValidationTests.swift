import DreamsrApp
import Foundation
import Testing

/// Issue 13 item 5: every stage's result is used by a later stage, or the pipeline file is refused at load naming
/// the stage (a texture without blend used to finish "ok" writing the un-textured image).
@Suite(.timeLimit(.minutes(1))) struct PipelineValidationTests {
    /// The tiny DreamSR pipeline with the given restorer, minus the named stages.
    static func yaml(restorer: String, without removed: Set<String> = []) -> String {
        var text = tinyPipelineYAML(name: "p-\(restorer)")
        if restorer == "realesrgan" {
            text = text.replacingOccurrences(of: "    restorer: dreamsr", with: "    restorer: realesrgan\n    model: realesrgan-x4plus")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { line in !removed.contains { line.trimmingCharacters(in: .whitespaces) == "- stage: \($0)" } }
            .joined(separator: "\n")
    }

    static func refusal(_ yaml: String) -> ConfigError? {
        do {
            _ = try PipelineDefinition.parse(yaml: yaml, file: "p.yaml")
            return nil
        } catch {
            return error as? ConfigError
        }
    }

    @Test(arguments: ["dreamsr", "realesrgan"])
    func textureWithoutBlendIsRefusedNamingTheStage(restorer: String) throws {
        // The complete pipeline loads: the refusal below is about the missing blend, nothing else.
        _ = try PipelineDefinition.parse(yaml: Self.yaml(restorer: restorer), file: "p.yaml")
        let e = try #require(Self.refusal(Self.yaml(restorer: restorer, without: ["blend"])),
                             "decode -> caption -> restore(\(restorer)) -> texture -> encode was accepted")
        #expect(e.key == "stages.3.stage", "\(e)")  // decode, caption, restore, texture
        #expect(e.problem.contains("'texture'") && e.problem.contains("'blend'"), "\(e.problem)")
        #expect(e.description.contains("p.yaml"), "\(e)")
    }

    @Test func dreamsrRestoreWithoutTextureIsRefused() throws {
        let e = try #require(Self.refusal(Self.yaml(restorer: "dreamsr", without: ["texture", "blend"])))
        #expect(e.key == "stages.2.stage", "\(e)")
        #expect(e.problem.contains("'restore' (restorer dreamsr)") && e.problem.contains("'texture'"), "\(e.problem)")
    }

    @Test func captionNobodyReadsIsRefused() throws {
        // Real-ESRGAN restorer, no texture: the prompts would be computed and thrown away.
        let e = try #require(Self.refusal(Self.yaml(restorer: "realesrgan", without: ["texture", "blend"])))
        #expect(e.key == "stages.1.stage", "\(e)")
        #expect(e.problem.contains("'caption'"), "\(e.problem)")
        // Without the caption the same pipeline is plain Real-ESRGAN and loads.
        let plain = try PipelineDefinition.parse(yaml: Self.yaml(restorer: "realesrgan", without: ["texture", "blend", "caption"]),
                                                 file: "p.yaml")
        #expect(plain.stages.map(\.kind) == [.decode, .restore, .encode])
    }

    @Test func shippedPipelinesAllLoad() throws {
        let dir = repoRoot + "/pipelines"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 6)
        for f in files { _ = try PipelineDefinition.load(path: dir + "/" + f) }
        _ = try #require(try PipelineDefinition.builtIn(named: "realesrgan"))
    }
}
