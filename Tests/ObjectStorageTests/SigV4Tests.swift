import Foundation
import Testing
@testable import ObjectStorage

/// The signer against AWS's published examples: the Signature Version 4 test suite (`get-vanilla`,
/// `get-vanilla-query-order-key-case`) and the S3 API reference's header and presigned-URL examples.
@Suite(.timeLimit(.minutes(1))) struct SigV4Tests {
    static func date(_ text: String) -> Date {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)!
    }

    static let suiteCredentials = S3Credentials(accessKeyID: "AKIDEXAMPLE",
                                                secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let s3Credentials = S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                             secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")

    func authorization(_ headers: [(String, String)]) -> String? { headers.first { $0.0 == "Authorization" }?.1 }

    @Test func testSuiteGetVanilla() {
        let signer = SigV4Signer(credentials: Self.suiteCredentials, region: "us-east-1", service: "service")
        let added = signer.sign(method: "GET", path: "/", query: [], headers: [("Host", "example.amazonaws.com")],
                                payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date("2015-08-30T12:36:00Z"))
        #expect(added.first { $0.0 == "x-amz-date" }?.1 == "20150830T123600Z")
        #expect(authorization(added) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test func testSuiteQueryOrderKeyCase() {
        let signer = SigV4Signer(credentials: Self.suiteCredentials, region: "us-east-1", service: "service")
        let added = signer.sign(method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")],
                                headers: [("Host", "example.amazonaws.com")],
                                payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date("2015-08-30T12:36:00Z"))
        #expect(authorization(added)?.hasSuffix(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500") == true)
    }

    @Test func s3GetObjectExample() {
        let signer = SigV4Signer(credentials: Self.s3Credentials, region: "us-east-1")
        let added = signer.sign(method: "GET", path: "/test.txt", query: [], headers: [
            ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash),
        ], payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date("2013-05-24T00:00:00Z"))
        #expect(authorization(added) == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func s3PutObjectExample() {
        let signer = SigV4Signer(credentials: Self.s3Credentials, region: "us-east-1")
        let payload = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        let added = signer.sign(method: "PUT", path: "/" + SigV4Signer.encode("test$file.text", keepSlash: true), query: [],
                                headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                                          ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", payload)],
                                payloadHash: payload, date: Self.date("2013-05-24T00:00:00Z"))
        #expect(authorization(added)?.hasSuffix(
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
            + "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true)
    }

    @Test func s3ListObjectsExample() {
        let signer = SigV4Signer(credentials: Self.s3Credentials, region: "us-east-1")
        let added = signer.sign(method: "GET", path: "/", query: [("max-keys", "2"), ("prefix", "J")],
                                headers: [("Host", "examplebucket.s3.amazonaws.com"),
                                          ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)],
                                payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date("2013-05-24T00:00:00Z"))
        #expect(authorization(added)?.hasSuffix(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true)
    }

    @Test func s3PresignedURLExample() {
        let signer = SigV4Signer(credentials: Self.s3Credentials, region: "us-east-1")
        let url = signer.presignedURL(method: "GET", scheme: "https", host: "examplebucket.s3.amazonaws.com",
                                      path: "/test.txt", expires: 86400, date: Self.date("2013-05-24T00:00:00Z"))
        #expect(url == "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                + "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                + "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                + "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    }

    @Test func sessionTokenIsSentAndSigned() {
        var credentials = Self.s3Credentials
        credentials.sessionToken = "TOKEN/with+chars="
        let signer = SigV4Signer(credentials: credentials, region: "eu-west-1")
        let added = signer.sign(method: "GET", path: "/k", query: [], headers: [("host", "b.s3.eu-west-1.amazonaws.com")],
                                payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date("2024-01-02T03:04:05Z"))
        #expect(added.contains { $0.0 == "x-amz-security-token" && $0.1 == "TOKEN/with+chars=" })
        #expect(authorization(added)?.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,") == true)
        #expect(authorization(added)?.contains("/20240102/eu-west-1/s3/aws4_request") == true)
    }

    @Test func canonicalFormsFollowTheSpecification() {
        #expect(SigV4Signer.encode("a b/c~d*e+é", keepSlash: true) == "a%20b/c~d%2Ae%2B%C3%A9")
        #expect(SigV4Signer.encode("a/b") == "a%2Fb")
        #expect(SigV4Signer.canonicalQuery([("uploads", ""), ("b", "2"), ("a", "x y")]) == "a=x%20y&b=2&uploads=")
        let (headers, signed) = SigV4Signer.canonicalHeaders([("X-Amz-Meta-A", "  one   two  "), ("Host", "h"),
                                                              ("x-amz-meta-a", "three")])
        #expect(headers == "host:h\nx-amz-meta-a:one two,three\n")
        #expect(signed == "host;x-amz-meta-a")
    }
}
