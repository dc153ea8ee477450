import DreamsrTestKit
import Testing

/// Issue 13 item 8: a test-kit wait that never ends fails the test with a message naming what it awaited, within its
/// deadline, instead of hanging CI.
@Suite(.timeLimit(.minutes(1))) struct TestKitDeadlineTests {
    static func recorded(_ issue: Issue, mentions text: String) -> Bool {
        issue.comments.contains { $0.rawValue.contains(text) }
    }

    @Test func waitForFailsNamingWhatItAwaitedAndReturnsWhatArrived() async {
        let events = AsyncEvents<Int>()
        events.emit(1)
        let t0 = ContinuousClock.now
        await withKnownIssue {
            let seen = await events.waitFor(count: 2, timeout: .milliseconds(100), "two numbers")
            #expect(seen == [1])
        } matching: { Self.recorded($0, mentions: "waiting for two numbers: 1 of 2 arrived") }
        #expect(ContinuousClock.now - t0 < .seconds(10))
        // An event that does arrive ends the wait at once, with no issue.
        async let both = events.waitFor(count: 2, timeout: .seconds(30))
        events.emit(2)
        #expect(await both == [1, 2])
    }

    @Test func gateNeverReleasedFailsNamingTheGateAndLetsTheJobThrough() async {
        let gate = TestGate("the restore gate", timeout: .milliseconds(100))
        await withKnownIssue {
            await gate.pass()
        } matching: { Self.recorded($0, mentions: "waiting at the restore gate") }
        // Released gates pass without an issue.
        gate.release()
        await gate.pass()
        gate.openAll()
        await gate.pass()
    }

    @Test func pollUntilFailsNamingTheCondition() async {
        await withKnownIssue {
            #expect(await pollUntil("a flag that never flips", timeout: .milliseconds(50)) { false } == false)
        } matching: { Self.recorded($0, mentions: "until a flag that never flips") }
        #expect(await pollUntil("true") { true })
    }
}
