using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// A worker grain's own call to a dispatcher fails after the dispatcher claimed a job for it (in a rolling restart, the
/// dispatcher's silo stops with the answer in flight). The claim must not wait for the claim lease: the worker grain
/// gives back what was claimed for the failed call, and parks again under a new call id, which the job then reaches. The
/// lost answer is made by a grain call filter that turns the dispatcher's answer into the failure a stopping silo causes.
/// </summary>
public sealed class LostDispatcherAnswerTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task AJobClaimedForAWaitWhoseAnswerWasLost_ReachesTheSamePoll_NotCountedAsAnAttempt(int families)
    {
        var lose = new LoseAWaitAnswer();
        await using var host = await GridHost.StartAsync(services: services => services.AddSingleton<IOutgoingGrainCallFilter>(lose));
        var client = await host.NewAccountAsync();
        var models = Enumerable.Range(0, families).Select(_ => ApiClient.Unique()).ToArray();
        var (worker, _) = await client.NewWorkerAsync("w", models);

        var poll = worker.PollAsync(string.Join('&', models.Select(m => $"models[]={m}")));
        foreach (var model in models) await host.ParkedAsync(model);
        lose.Family = ModelNames.FamilyOf(models[0]);
        var id = await client.SubmitAsync(new { model = models[0], model_match = "exact", prompt = "p" });

        // The poll's window (30 s) is far off: only the job given back can answer it now.
        var assignment = (await poll.WaitAsync(TimeSpan.FromSeconds(20)))!.Value;
        Assert.Equal(1, lose.Lost);
        Assert.Equal(id, assignment.GetProperty("job_id").GetInt64());
        Assert.Equal(1, assignment.GetProperty("attempt").GetInt32());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), System.Net.HttpStatusCode.OK);
    }

    [Fact]
    public async Task ASlicesCallIds_FallInItsRange_AsPostgreSqlOrdersThem_AndNoOtherSlicesDo()
    {
        await using var host = await GridHost.StartAsync();
        await using var connection = await host.OpenConnectionAsync();
        var slice = Guid.NewGuid();
        var (first, last) = PollIds.All(slice);
        var ofSlice = new[] { PollIds.Of(slice, 0, 0), PollIds.Of(slice, 0, 1), PollIds.Of(slice, 3, 0), PollIds.Of(slice, 199, 300) };
        var others = Enumerable.Range(0, 50).Select(_ => Guid.NewGuid()).Append(PollIds.Of(Guid.NewGuid(), 0, 0)).ToArray();
        const string Within = "SELECT @id BETWEEN @first AND @last";
        foreach (var id in ofSlice) Assert.True(await connection.QuerySingleAsync<bool>(Within, new { id, first, last }), $"{id} is one of {slice}'s calls");
        foreach (var id in others) Assert.False(await connection.QuerySingleAsync<bool>(Within, new { id, first, last }), $"{id} is not one of {slice}'s calls");

        // A range of one family's calls holds those calls, and neither the call after them nor another family's.
        var (from, to) = PollIds.Calls(slice, 3, 0, 1);
        Assert.True(await connection.QuerySingleAsync<bool>(Within, new { id = PollIds.Of(slice, 3, 1), first = from, last = to }));
        Assert.False(await connection.QuerySingleAsync<bool>(Within, new { id = PollIds.Of(slice, 3, 2), first = from, last = to }));
        Assert.False(await connection.QuerySingleAsync<bool>(Within, new { id = PollIds.Of(slice, 2, 1), first = from, last = to }));
        Assert.False(await connection.QuerySingleAsync<bool>(Within, new { id = PollIds.Of(slice, 4, 0), first = from, last = to }));
    }

    /// <summary>Turns the first answer carrying a job from the armed family's dispatcher into a lost answer.</summary>
    private sealed class LoseAWaitAnswer : IOutgoingGrainCallFilter
    {
        private int _lost;

        public volatile string? Family;

        public int Lost => Volatile.Read(ref _lost);

        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            await context.Invoke();
            if (context.InterfaceMethod?.Name == nameof(IDispatcherGrain.WaitAsync) && context.Result is ClaimedJob
                && context.TargetId.Key.ToString() == Family && Interlocked.CompareExchange(ref _lost, 1, 0) == 0)
            {
                throw new SiloUnavailableException("the dispatcher's silo stopped with the answer in flight (test)");
            }
        }
    }
}
