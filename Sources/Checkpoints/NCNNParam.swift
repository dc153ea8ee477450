import Foundation

/// One value of an ncnn layer parameter (`k=v`; `-23300-k=n,v1,...,vn` for arrays).
public enum NCNNParamValue: Sendable, Equatable {
    case int(Int)
    case float(Float)
    case ints([Int])
    case floats([Float])
}

/// The `k=v` parameters of one ncnn layer, keyed by parameter id.
public struct NCNNParamDict: Sendable, Equatable {
    public var values: [Int: NCNNParamValue] = [:]

    public init(_ values: [Int: NCNNParamValue] = [:]) { self.values = values }

    public func int(_ id: Int, default d: Int) -> Int {
        switch values[id] {
        case .int(let v): return v
        case .float(let f): return Int(f)
        default: return d
        }
    }

    public func float(_ id: Int, default d: Float) -> Float {
        switch values[id] {
        case .float(let f): return f
        case .int(let v): return Float(v)
        default: return d
        }
    }

    public func floats(_ id: Int) -> [Float]? {
        switch values[id] {
        case .floats(let a): return a
        case .ints(let a): return a.map(Float.init)
        default: return nil
        }
    }

    public func contains(_ id: Int) -> Bool { values[id] != nil }
}

/// One layer line of an ncnn `.param` file: `Type Name nInputs nOutputs inputs... outputs... k=v...`.
public struct NCNNLayer: Sendable, Equatable {
    public var type: String
    public var name: String
    public var inputs: [String]
    public var outputs: [String]
    public var params: NCNNParamDict
    /// 1-based line number in the .param file (for error messages).
    public var line: Int
}

/// A parsed ncnn `.param` text file (magic 7767517).
public struct NCNNParam: Sendable {
    public static let magic = 7_767_517
    public var layers: [NCNNLayer]
    public var blobCount: Int

    public init(layers: [NCNNLayer], blobCount: Int) {
        self.layers = layers
        self.blobCount = blobCount
    }

    public init(contentsOf path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw NCNNFormatError(.fileNotFound, "no such file", path: path)
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw NCNNFormatError(.fileNotFound, "cannot read: \(error)", path: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw NCNNFormatError(.malformedHeader, "not UTF-8 text (is this the .bin file?)", path: path)
        }
        do { try self.init(text: text) } catch let e as NCNNFormatError {
            throw NCNNFormatError(e.code, e.message, path: path)
        }
    }

    /// Parses the text of a `.param` file.
    public init(text: String) throws {
        var lines = text.split(whereSeparator: \.isNewline).enumerated().map { (i, l) in (i + 1, l) }
            .filter { !$0.1.allSatisfy(\.isWhitespace) }
        guard !lines.isEmpty else { throw NCNNFormatError(.badMagic, "empty .param file") }
        let magicLine = lines.removeFirst()
        guard Int(magicLine.1.trimmingCharacters(in: .whitespaces)) == Self.magic else {
            throw NCNNFormatError(.badMagic, "first line must be \(Self.magic), found '\(magicLine.1.prefix(40))'")
        }
        guard !lines.isEmpty else { throw NCNNFormatError(.malformedHeader, "missing layer/blob count line") }
        let counts = lines.removeFirst().1.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        guard counts.count == 2, counts[0] >= 0, counts[1] >= 0 else {
            throw NCNNFormatError(.malformedHeader, "line 2 must be '<layer count> <blob count>'")
        }
        let layerCount = counts[0]
        guard lines.count == layerCount else {
            throw NCNNFormatError(.malformedHeader, "header says \(layerCount) layers, file has \(lines.count) layer lines")
        }
        var layers: [NCNNLayer] = []
        layers.reserveCapacity(layerCount)
        for (lineNo, line) in lines {
            layers.append(try Self.parseLayer(line, lineNo: lineNo))
        }
        self.layers = layers
        self.blobCount = counts[1]
    }

    static func parseLayer(_ line: Substring, lineNo: Int) throws -> NCNNLayer {
        let f = line.split(whereSeparator: \.isWhitespace)
        func fail(_ msg: String) -> NCNNFormatError { NCNNFormatError(.malformedLayer, "line \(lineNo): \(msg)") }
        guard f.count >= 4, let nIn = Int(f[2]), let nOut = Int(f[3]), nIn >= 0, nOut >= 0 else {
            throw fail("expected 'Type Name nInputs nOutputs ...'")
        }
        guard f.count >= 4 + nIn + nOut else { throw fail("expected \(nIn) inputs and \(nOut) outputs") }
        let inputs = f[4..<(4 + nIn)].map(String.init)
        let outputs = f[(4 + nIn)..<(4 + nIn + nOut)].map(String.init)
        var params = NCNNParamDict()
        for kv in f[(4 + nIn + nOut)...] {
            guard let eq = kv.firstIndex(of: "="), let key = Int(kv[..<eq]) else {
                throw NCNNFormatError(.malformedParam, "line \(lineNo): bad parameter '\(kv)'")
            }
            let value = kv[kv.index(after: eq)...]
            if key <= -23300 {
                let parts = value.split(separator: ",")
                guard let n = parts.first.flatMap({ Int($0) }), n == parts.count - 1 else {
                    throw NCNNFormatError(.malformedParam, "line \(lineNo): bad array parameter '\(kv)'")
                }
                let items = parts.dropFirst()
                if items.contains(where: Self.looksFloat) {
                    let fl = items.compactMap { Float($0) }
                    guard fl.count == n else { throw NCNNFormatError(.malformedParam, "line \(lineNo): bad floats in '\(kv)'") }
                    params.values[-23300 - key] = .floats(fl)
                } else {
                    let iv = items.compactMap { Int($0) }
                    guard iv.count == n else { throw NCNNFormatError(.malformedParam, "line \(lineNo): bad ints in '\(kv)'") }
                    params.values[-23300 - key] = .ints(iv)
                }
            } else if Self.looksFloat(value) {
                guard let v = Float(value) else { throw NCNNFormatError(.malformedParam, "line \(lineNo): bad float '\(kv)'") }
                params.values[key] = .float(v)
            } else {
                guard let v = Int(value) else { throw NCNNFormatError(.malformedParam, "line \(lineNo): bad int '\(kv)'") }
                params.values[key] = .int(v)
            }
        }
        return NCNNLayer(type: String(f[0]), name: String(f[1]), inputs: inputs, outputs: outputs, params: params,
                         line: lineNo)
    }

    static func looksFloat<S: StringProtocol>(_ s: S) -> Bool {
        s.contains(".") || s.contains("e") || s.contains("E")
    }
}
