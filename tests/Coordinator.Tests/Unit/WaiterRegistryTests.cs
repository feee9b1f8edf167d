using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;

namespace Coordinator.Tests.Unit;

public class WaiterRegistryTests
{
    [Fact]
    public async Task Wake_SignalsTheLongestWaitingPollOfThatKey()
    {
        var registry = new WaiterRegistry();
        var first = registry.Park(["m:a", "m:b"]);
        var second = registry.Park(["m:a"]);

        Assert.Equal(1, registry.Wake("m:a"));

        Assert.True(first.Signalled.IsCompletedSuccessfully);
        Assert.Equal("m:a", await first.Signalled);
        Assert.False(second.Signalled.IsCompleted);
        Assert.Equal(1, registry.ParkedCount);
    }

    [Fact]
    public void Wake_RemovesThePollFromAllItsKeys()
    {
        var registry = new WaiterRegistry();
        var poll = registry.Park(["m:a", "f:b"]);
        registry.Wake("m:a");

        Assert.Equal(0, registry.Wake("f:b"));
        Assert.Equal("m:a", registry.Unpark(poll));
    }

    [Fact]
    public void Wake_WithNoParkedPoll_CountsAsUnanswered()
    {
        var registry = new WaiterRegistry();
        var before = registry.UnansweredWakes;
        Assert.Equal(0, registry.Wake("m:a"));
        Assert.Equal(before + 1, registry.UnansweredWakes);
    }

    [Fact]
    public void Unpark_OfAParkedPoll_AnswersNoSignal()
    {
        var registry = new WaiterRegistry();
        var poll = registry.Park(["any"]);
        Assert.Null(registry.Unpark(poll));
        Assert.Equal(0, registry.ParkedCount);
        Assert.Equal(0, registry.Wake("any"));
    }

    [Fact]
    public void WakeAll_SignalsEveryParkedPoll()
    {
        var registry = new WaiterRegistry();
        var polls = Enumerable.Range(0, 5).Select(i => registry.Park([$"m:{i}", "any"])).ToList();
        Assert.Equal(5, registry.WakeAll());
        Assert.All(polls, p => Assert.True(p.Signalled.IsCompletedSuccessfully));
        Assert.Equal(0, registry.ParkedCount);
    }

    [Fact]
    public void WakeKeys_FollowTheSpecMatchingRule()
    {
        Assert.Equal(["m:llama3:8b"], WakeKeys.ForJob(ModelMatch.Exact, "llama3:8b", "llama3"));
        Assert.Equal(["m:llama3:8b", "f:llama3"], WakeKeys.ForJob(ModelMatch.Family, "llama3:8b", "llama3"));
        Assert.Equal(["any"], WakeKeys.ForJob(ModelMatch.Any, null, null));
        Assert.Equal(["m:a", "f:b", "any"], WakeKeys.ForCapabilities(new Capabilities(["a"], ["b"], true)));
    }
}
