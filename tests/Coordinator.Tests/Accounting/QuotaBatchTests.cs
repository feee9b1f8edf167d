using Coordinator.Grains.Accounting;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;

namespace Coordinator.Tests.Accounting;

/// <summary>
/// A silo sends the batched counts of an account without limits again when the call failed. A call can fail after the
/// account's grain counted it (its silo left with the answer in flight, as in a rolling restart): the batch goes again
/// under its id, and is counted once. The lost answer is made by a grain call filter; the clock moves the batches.
/// </summary>
public sealed class QuotaBatchTests
{
    [Fact]
    public async Task ABatchCountedWhoseAnswerWasLost_IsSentAgain_AndCountedOnce()
    {
        var clock = new ManualTimeProvider();
        var lose = new LoseABatchAnswer();
        await using var host = await GridHost.StartAsync(time: clock, services: services => services.AddSingleton<IOutgoingGrainCallFilter>(lose));
        var (accountId, _) = await host.NewAccountOnPlanWithIdAsync(null, null);
        var counting = host.Get<QuotaCounting>();
        // The first count goes to the grain, which answers that the plan has no limit: the next ones are batched.
        await counting.CountTokensAsync(accountId, 5);
        lose.AccountId = accountId;
        await counting.CountTokensAsync(accountId, 7);

        clock.Advance(QuotaCounting.SendInterval);
        await Eventually.TrueAsync(() => lose.Calls == 1, "the batch was sent, counted, and its answer lost");
        Assert.Equal(12, (await host.QuotaTodayAsync(accountId)).Tokens);

        clock.Advance(QuotaCounting.SendInterval);
        await Eventually.TrueAsync(() => lose.Calls == 2, "the batch was sent again");
        Assert.Single(lose.Batches);
        Assert.Equal(12, (await host.QuotaTodayAsync(accountId)).Tokens);
    }

    /// <summary>Lets the first batch of the account reach its grain, then fails the call as a silo that left would.</summary>
    private sealed class LoseABatchAnswer : IOutgoingGrainCallFilter
    {
        private int _calls;

        public long AccountId { get; set; }

        public int Calls => Volatile.Read(ref _calls);

        public System.Collections.Concurrent.ConcurrentDictionary<Guid, int> Batches { get; } = new();

        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            await context.Invoke();
            if (context.InterfaceMethod?.Name != nameof(IAccountGrain.CountBatchAsync) || context.TargetId.GetIntegerKey() != AccountId) return;
            Batches.AddOrUpdate((Guid)context.Request.GetArgument(0)!, 1, (_, n) => n + 1);
            if (Interlocked.Increment(ref _calls) == 1) throw new SiloUnavailableException("the account grain's silo left with the answer in flight (test)");
        }
    }
}
