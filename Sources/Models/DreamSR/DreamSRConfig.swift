import Checkpoints
import Foundation

/// DreamSR's texture-stage sigma spacing (dreamsr-architecture item 7).
public enum DreamSRSchedule: Sendable, Equatable {
    /// `u_0 = inverse_time_shift(mu, t)`, `u_k = u_0 (1 − k/N)`, `sigma_k = time_shift(mu, u_k)`; mu from the patch's
    /// token count.
    case shifted
    /// `sigma_k = t (1 − k/N)`.
    case linear
    /// `texture_steps + 1` sigmas, non-increasing, the first one being the start sigma.
    case explicit([Double])
}

/// The fields of a DreamSR checkpoint's `dreamsr_config` metadata (dreamsr-architecture "What this project fixes"),
/// with the spec's defaults. Sizes are in output pixels (`patch_size` 512 = 64 latent cells = 32 × 32 tokens).
public struct DreamSRConfig: Sendable, Equatable {
    public enum Injection: String, Sendable, CaseIterable { case corresponding, interval }
    public enum Weighting: String, Sendable, CaseIterable { case gaussian, uniform }
    public enum RopeIds: String, Sendable, CaseIterable { case patch, global }
    public enum ColorFix: String, Sendable, CaseIterable { case wavelet, adain, none }

    public var controlnetDepth = 9
    public var injection = Injection.corresponding
    public var restoreT = 1.0
    public var textureT = 0.8
    public var textureSteps = 16
    public var schedule = DreamSRSchedule.shifted
    public var guidance = 3.5
    public var patchSize = 512
    public var patchOverlap = 128
    public var patchWeighting = Weighting.gaussian
    public var ropeIds = RopeIds.patch
    public var loraRank = 256
    public var loraAlpha = 256.0
    public var colorFix = ColorFix.wavelet
    public var scale = 4

    /// The metadata key holding the JSON object.
    public static let metadataKey = "dreamsr_config"

    public init() {}

    public var loraScale: Float { Float(loraAlpha / Double(loraRank)) }
    /// Patch side in latent cells (output pixels / 8).
    public var patchLatent: Int { patchSize / 8 }
    /// Overlap in latent cells.
    public var overlapLatent: Int { patchOverlap / 8 }
    /// Packed tokens of one patch (1024 for 512 px).
    public var patchTokens: Int { (patchLatent / 2) * (patchLatent / 2) }

    /// Parses the `dreamsr_config` JSON object; absent fields keep their defaults, unknown fields are ignored.
    public init(json data: Data) throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badConfig, "\(Self.metadataKey) is not a JSON object")
        }
        self.init()
        func number(_ k: String) throws -> Double? {
            guard let v = obj[k], !(v is NSNull) else { return nil }
            guard let n = Self.numeric(v) else {
                throw CheckpointError(.badConfig, "\(Self.metadataKey).\(k) must be a number, got \(v)")
            }
            return n
        }
        func integer(_ k: String) throws -> Int? {
            guard let d = try number(k) else { return nil }
            guard d == d.rounded(), abs(d) < 1e9 else {
                throw CheckpointError(.badConfig, "\(Self.metadataKey).\(k) must be an integer, got \(d)")
            }
            return Int(d)
        }
        func choice<E: RawRepresentable & CaseIterable>(_ k: String, _: E.Type) throws -> E? where E.RawValue == String {
            guard let v = obj[k], !(v is NSNull) else { return nil }
            guard let s = v as? String, let e = E(rawValue: s) else {
                throw CheckpointError(.badConfig, "\(Self.metadataKey).\(k) must be one of "
                                   + "\(E.allCases.map(\.rawValue)), got \(v)")
            }
            return e
        }
        if let v = try integer("controlnet_depth") { controlnetDepth = v }
        if let v = try choice("injection", Injection.self) { injection = v }
        if let v = try number("restore_t") { restoreT = v }
        if let v = try number("texture_t") { textureT = v }
        if let v = try integer("texture_steps") { textureSteps = v }
        if let v = obj["schedule"], !(v is NSNull) {
            if let s = v as? String {
                switch s {
                case "shifted": schedule = .shifted
                case "linear": schedule = .linear
                default:
                    throw CheckpointError(.badConfig, "\(Self.metadataKey).schedule must be \"shifted\", \"linear\" or a "
                                       + "list of sigmas, got \"\(s)\"")
                }
            } else if let list = v as? [Any], list.allSatisfy({ Self.numeric($0) != nil }) {
                schedule = .explicit(list.map { Self.numeric($0)! })
            } else {
                throw CheckpointError(.badConfig, "\(Self.metadataKey).schedule must be a string or a list of numbers")
            }
        }
        if let v = try number("guidance") { guidance = v }
        if let v = try integer("patch_size") { patchSize = v }
        if let v = try integer("patch_overlap") { patchOverlap = v }
        if let v = try choice("patch_weighting", Weighting.self) { patchWeighting = v }
        if let v = try choice("rope_ids", RopeIds.self) { ropeIds = v }
        if let v = try integer("lora_rank") { loraRank = v }
        if let v = try number("lora_alpha") { loraAlpha = v }
        if let v = try choice("color_fix", ColorFix.self) { colorFix = v }
        if let v = try integer("scale") { scale = v }
        try validate()
    }

    /// A JSON number as Double (not a boolean), across Foundation implementations.
    static func numeric(_ v: Any) -> Double? {
        if type(of: v) == Bool.self { return nil }
        switch v {
        case let d as Double: return d
        case let i as Int: return Double(i)
        case let n as NSNumber:
            return n.doubleValue
        default: return nil
        }
    }

    public init(jsonString: String) throws { try self.init(json: Data(jsonString.utf8)) }

    /// Checks every field; `mainDoubleBlocks` (when known) bounds the ControlNet depth.
    public func validate(mainDoubleBlocks: Int? = nil) throws {
        func bad(_ key: String, _ why: String) -> CheckpointError {
            CheckpointError(.badConfig, "\(Self.metadataKey).\(key) \(why)")
        }
        guard controlnetDepth >= 1 else { throw bad("controlnet_depth", "must be >= 1, got \(controlnetDepth)") }
        if let n = mainDoubleBlocks, controlnetDepth > n {
            throw bad("controlnet_depth", "\(controlnetDepth) exceeds the main network's \(n) double blocks")
        }
        guard restoreT > 0, restoreT <= 1 else { throw bad("restore_t", "must be in (0, 1], got \(restoreT)") }
        guard textureT > 0, textureT <= 1 else { throw bad("texture_t", "must be in (0, 1], got \(textureT)") }
        guard textureSteps >= 1 else { throw bad("texture_steps", "must be >= 1, got \(textureSteps)") }
        if case .explicit(let s) = schedule {
            guard s.count == textureSteps + 1 else {
                throw bad("schedule", "explicit list needs texture_steps + 1 = \(textureSteps + 1) sigmas, got \(s.count)")
            }
            guard s.allSatisfy({ $0 >= 0 && $0 <= 1 }), zip(s, s.dropFirst()).allSatisfy({ $1 <= $0 }) else {
                throw bad("schedule", "explicit sigmas must lie in [0, 1] and be non-increasing, got \(s)")
            }
        }
        guard patchSize > 0, patchSize % 16 == 0 else {
            throw bad("patch_size", "must be a positive multiple of 16 pixels, got \(patchSize)")
        }
        guard patchOverlap >= 0, patchOverlap % 8 == 0, patchOverlap < patchSize else {
            throw bad("patch_overlap", "must be a multiple of 8 in [0, patch_size), got \(patchOverlap)")
        }
        guard loraRank >= 1 else { throw bad("lora_rank", "must be >= 1, got \(loraRank)") }
        guard loraAlpha.isFinite else { throw bad("lora_alpha", "must be finite") }
        guard scale >= 1 else { throw bad("scale", "must be >= 1, got \(scale)") }
    }

    /// The JSON object (keys as in the checkpoint).
    public func jsonString() -> String {
        var obj: [String: Any] = [
            "controlnet_depth": controlnetDepth, "injection": injection.rawValue, "restore_t": restoreT,
            "texture_t": textureT, "texture_steps": textureSteps, "guidance": guidance, "patch_size": patchSize,
            "patch_overlap": patchOverlap, "patch_weighting": patchWeighting.rawValue, "rope_ids": ropeIds.rawValue,
            "lora_rank": loraRank, "lora_alpha": loraAlpha, "color_fix": colorFix.rawValue, "scale": scale,
        ]
        switch schedule {
        case .shifted: obj["schedule"] = "shifted"
        case .linear: obj["schedule"] = "linear"
        case .explicit(let s): obj["schedule"] = s
        }
        let data = try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Schedule

    /// mu of FLUX's dynamic shift for `tokens` packed tokens: (256 → 0.5), (4096 → 1.15), linear.
    public static func mu(tokens: Int) -> Double {
        let m = (1.15 - 0.5) / Double(4096 - 256)
        return m * Double(tokens) + (0.5 - m * 256)
    }

    /// `e^mu / (e^mu + (1/u − 1))`, 0 at u = 0.
    public static func timeShift(mu: Double, _ u: Double) -> Double {
        guard u > 0 else { return 0 }
        return exp(mu) / (exp(mu) + (1 / u - 1))
    }

    public static func inverseTimeShift(mu: Double, _ sigma: Double) -> Double {
        1 / (1 + exp(mu) * (1 / sigma - 1))
    }

    /// `texture_steps + 1` sigmas of the texture stage: the first is the start sigma (exactly `texture_t` for
    /// "shifted" and "linear"), the last 0 (for those two).
    public func textureSigmas() -> [Double] {
        let n = textureSteps
        switch schedule {
        case .explicit(let s):
            return s
        case .linear:
            return (0..<n).map { textureT * (1 - Double($0) / Double(n)) } + [0]
        case .shifted:
            let mu = Self.mu(tokens: patchTokens)
            let u0 = Self.inverseTimeShift(mu: mu, textureT)
            return [textureT] + (1..<n).map { Self.timeShift(mu: mu, u0 * (1 - Double($0) / Double(n))) } + [0]
        }
    }

    /// The ControlNet layer whose features feed main double block `block` (nil: none), for `mainBlocks` blocks.
    public func injectionLayer(mainBlock block: Int, mainBlocks: Int) -> Int? {
        switch injection {
        case .corresponding:
            return block < controlnetDepth ? block : nil
        case .interval:
            let interval = (mainBlocks + controlnetDepth - 1) / controlnetDepth
            let l = block / interval
            return l < controlnetDepth ? l : nil
        }
    }
}
