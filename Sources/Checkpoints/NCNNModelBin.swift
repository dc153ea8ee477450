import Foundation
import Tensor

/// Sequential reader for an ncnn `.bin` weight file.
///
/// Each layer reads its blobs in order. A "tagged" blob starts with a 4-byte tag: `0x01306B47` = float16 data
/// (padded to 4 bytes), `0` = raw float32; a "raw" blob (e.g. a convolution bias) is float32 with no tag. Half
/// values are widened to float32 once, at load.
public struct NCNNModelBin {
    public static let tagFloat16: UInt32 = 0x0130_6B47
    public static let tagFloat32: UInt32 = 0
    public static let tagInt8: UInt32 = 0x000D_4B38

    public let path: String?
    private let data: Data
    public private(set) var offset: Int = 0

    public init(contentsOf path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw NCNNFormatError(.fileNotFound, "no such file", path: path)
        }
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw NCNNFormatError(.fileNotFound, "cannot read: \(error)", path: path)
        }
        self.path = path
    }

    public init(data: Data) {
        self.data = data
        self.path = nil
    }

    public var remaining: Int { data.count - offset }

    private func truncated(_ what: String, need: Int) -> NCNNFormatError {
        NCNNFormatError(.truncatedWeights, "\(what): need \(need) bytes at offset \(offset), file has \(data.count)"
                        + " (does the .bin belong to this .param?)", path: path)
    }

    /// Reads a tagged blob of `count` values (float16 or float32) as a float32 tensor of `shape`.
    public mutating func readTagged(count: Int, shape: [Int], what: String) throws -> Tensor {
        precondition(shape.reduce(1, *) == count)
        guard remaining >= 4 else { throw truncated(what, need: 4) }
        let tag = data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        switch UInt32(littleEndian: tag) {
        case Self.tagFloat16:
            let bytes = count * 2
            let padded = (bytes + 3) & ~3
            guard remaining >= 4 + padded else { throw truncated(what, need: 4 + padded) }
            let start = offset + 4
            let h = data.withUnsafeBytes { raw in Tensor(float16Bits: raw.baseAddress! + start, shape: shape) }
            offset = start + padded
            return h
        case Self.tagFloat32:
            let bytes = count * 4
            guard remaining >= 4 + bytes else { throw truncated(what, need: 4 + bytes) }
            let start = offset + 4
            let t = data.withUnsafeBytes { raw in
                Tensor(float32Bytes: UnsafeRawBufferPointer(rebasing: raw[start..<(start + bytes)]), shape: shape)
            }
            offset = start + bytes
            return t
        default:
            throw NCNNFormatError(.unsupportedWeightType,
                                  "\(what): weight tag 0x\(String(tag, radix: 16)) at offset \(offset) is not float16"
                                  + " (0x01306b47) or float32 (0); quantized ncnn models are not supported", path: path)
        }
    }

    /// Reads an untagged float32 blob of `count` values.
    public mutating func readRaw(count: Int, shape: [Int], what: String) throws -> Tensor {
        precondition(shape.reduce(1, *) == count)
        let bytes = count * 4
        guard remaining >= bytes else { throw truncated(what, need: bytes) }
        let start = offset
        let t = data.withUnsafeBytes { raw in
            Tensor(float32Bytes: UnsafeRawBufferPointer(rebasing: raw[start..<(start + bytes)]), shape: shape)
        }
        offset += bytes
        return t
    }

    /// Throws unless every byte was consumed (a mismatch between .param and .bin).
    public func expectEnd() throws {
        if remaining != 0 {
            throw NCNNFormatError(.trailingWeights, "\(remaining) bytes left after the last layer"
                                  + " (does the .bin belong to this .param?)", path: path)
        }
    }
}

/// The weights of one ncnn `Convolution` layer, read from the .bin in layer order.
public struct NCNNConvolution: Sendable {
    public let name: String
    public let outChannels: Int
    public let inChannels: Int
    public let kernelW: Int
    public let kernelH: Int
    public let strideW: Int
    public let strideH: Int
    public let dilationW: Int
    public let dilationH: Int
    public let padLeft: Int
    public let padTop: Int
    public let padRight: Int
    public let padBottom: Int
    /// `[out, in, kh, kw]`
    public let weight: Tensor
    public let bias: Tensor?
    /// ncnn activation_type (0 none, 1 ReLU, 2 LeakyReLU, ...) and its parameters.
    public let activationType: Int
    public let activationParams: [Float]

    /// Reads the layer's parameters and its weight blobs (weight tagged, bias raw float32).
    public init(layer: NCNNLayer, bin: inout NCNNModelBin) throws {
        let p = layer.params
        func bad(_ msg: String) -> NCNNFormatError {
            NCNNFormatError(.malformedParam, "layer \(layer.name) (line \(layer.line)): \(msg)", path: bin.path)
        }
        name = layer.name
        outChannels = p.int(0, default: 0)
        kernelW = p.int(1, default: 0)
        kernelH = p.int(11, default: kernelW)
        dilationW = p.int(2, default: 1)
        dilationH = p.int(12, default: dilationW)
        strideW = p.int(3, default: 1)
        strideH = p.int(13, default: strideW)
        padLeft = p.int(4, default: 0)
        padTop = p.int(14, default: padLeft)
        padRight = p.int(15, default: padLeft)
        padBottom = p.int(16, default: padTop)
        let biasTerm = p.int(5, default: 0)
        let weightSize = p.int(6, default: 0)
        activationType = p.int(9, default: 0)
        activationParams = p.floats(10) ?? []
        if p.int(8, default: 0) != 0 { throw bad("int8 quantized convolutions are not supported") }
        if p.int(19, default: 0) != 0 { throw bad("dynamic weights are not supported") }
        guard outChannels > 0, kernelW > 0, kernelH > 0, weightSize > 0 else {
            throw bad("num_output, kernel and weight_data_size must be > 0")
        }
        guard padLeft >= 0, padTop >= 0, padRight >= 0, padBottom >= 0 else {
            throw bad("'same' padding modes (negative pad values) are not supported")
        }
        guard weightSize % (outChannels * kernelW * kernelH) == 0 else {
            throw bad("weight_data_size \(weightSize) is not a multiple of \(outChannels)x\(kernelH)x\(kernelW)")
        }
        inChannels = weightSize / (outChannels * kernelW * kernelH)
        weight = try bin.readTagged(count: weightSize, shape: [outChannels, inChannels, kernelH, kernelW],
                                    what: "\(layer.name) weight")
        bias = biasTerm != 0 ? try bin.readRaw(count: outChannels, shape: [outChannels], what: "\(layer.name) bias") : nil
    }
}
