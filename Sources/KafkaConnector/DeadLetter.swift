import Captioning

/// One dead letter, sized to fit the dead-letter topic. It carries the original key, headers and value plus the
/// `dreamsr.*` error headers; when that would exceed the limit, the value is cut to what fits and the letter says
/// so (`dreamsr.original.size`, `dreamsr.original.sha256`, `dreamsr.truncated`). `smaller()` gives the next
/// smaller form after a "message too large" refusal: half the value, then no value, then no original key and
/// headers either; after that there is nothing left to drop.
struct DeadLetter {
    /// The error text carried in the `dreamsr.error` header is cut to this many characters.
    static let maxErrorBytes = 4096
    /// Bytes reserved for the record and batch framing (Kafka v2: 61-byte batch header + record varints) and
    /// librdkafka's own estimate of it; generous so the first try fits.
    static let framingBytes = 512
    /// Below this many bytes of value, `smaller()` drops the value at once instead of halving it.
    static let smallestValue = 1024

    let original: ConsumedMessage
    let dreamsrHeaders: [KafkaHeader]
    private(set) var valueBytes: Int
    private(set) var keepsOriginalKeyAndHeaders = true
    private var digest: String?

    init(original: ConsumedMessage, dreamsrHeaders: [KafkaHeader], limit: Int) {
        self.original = original
        self.dreamsrHeaders = dreamsrHeaders
        let total = original.value?.count ?? 0
        valueBytes = total
        // What is left for the value once everything else (and the truncation headers) is counted.
        let room = limit - Self.framingBytes - Self.size(of: original.key) - Self.size(of: original.headers)
            - Self.size(of: dreamsrHeaders) - Self.truncationHeadersBytes
        if total > room { valueBytes = max(0, room) }
        if valueBytes < total { digest = Self.sha256(original.value ?? []) }
    }

    var originalSize: Int { original.value?.count ?? 0 }
    var isTruncated: Bool { valueBytes < originalSize || !keepsOriginalKeyAndHeaders }

    var key: [UInt8]? { keepsOriginalKeyAndHeaders ? original.key : nil }
    var value: [UInt8] { Array((original.value ?? []).prefix(valueBytes)) }

    var headers: [KafkaHeader] {
        var all = keepsOriginalKeyAndHeaders ? original.headers : []
        all += dreamsrHeaders
        if isTruncated {
            all.append(KafkaHeader(DeadLetterHeader.originalSize, String(originalSize)))
            all.append(KafkaHeader(DeadLetterHeader.originalSHA256, digest ?? Self.sha256(original.value ?? [])))
            all.append(KafkaHeader(DeadLetterHeader.truncated,
                                   keepsOriginalKeyAndHeaders ? "value" : "value,key,headers"))
        }
        return all
    }

    /// Bytes this letter takes against `message.max.bytes` (our estimate, framing included).
    var size: Int { Self.framingBytes + Self.size(of: key) + valueBytes + Self.size(of: headers) }

    /// The next smaller form, or nil when only the dreamsr headers are left.
    func smaller() -> DeadLetter? {
        var next = self
        if next.digest == nil { next.digest = Self.sha256(original.value ?? []) }
        if valueBytes >= Self.smallestValue {
            next.valueBytes = valueBytes / 2
        } else if valueBytes > 0 {
            next.valueBytes = 0
        } else if keepsOriginalKeyAndHeaders && (original.key != nil || !original.headers.isEmpty) {
            next.keepsOriginalKeyAndHeaders = false
        } else {
            return nil
        }
        return next
    }

    static func sha256(_ bytes: [UInt8]) -> String { SHA256Digest.hash(bytes).hex }

    /// The three truncation headers (names, a size up to 20 digits, 64 hex digits, the longest marker).
    static let truncationHeadersBytes = size(of: [
        KafkaHeader(DeadLetterHeader.originalSize, String(repeating: "9", count: 20)),
        KafkaHeader(DeadLetterHeader.originalSHA256, String(repeating: "f", count: 64)),
        KafkaHeader(DeadLetterHeader.truncated, "value,key,headers"),
    ])

    static func size(of key: [UInt8]?) -> Int { key?.count ?? 0 }

    /// Serialized size of headers: name and value plus up to 10 bytes of varint lengths each.
    static func size(of headers: [KafkaHeader]) -> Int {
        headers.reduce(0) { $0 + $1.name.utf8.count + ($1.value?.count ?? 0) + 10 }
    }
}
