using System.Collections.Concurrent;
using System.Net;
using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// Orleans deactivates an activation on its own while it holds a parked poll: the directory does, on every silo, for the
/// grains whose directory entry was on a silo that left. A deactivating activation runs no other call until the calls it
/// runs have ended, so the grains end their polls as soon as the deactivation begins (<see cref="DeactivationSignals"/>,
/// on Orleans' grain lifecycle event, which these tests pin). The deactivation is started here the way the directory
/// starts it, on the activation's context; the clock stands still, so no window, slice or hold ends a poll instead.
/// </summary>
public sealed class DeactivationSignalTests
{
    [Fact]
    public async Task ADispatcherTheDirectoryDeactivates_AnswersItsParkedPoll_AndTheNextSubmissionReachesThatPoll()
    {
        await using var parked = await ParkedPoll.StartAsync();
        var (host, clock, contexts, client, model, _, _, poll) = parked;

        var dispatcher = host.Grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(model));
        DirectoryFails(contexts.Of(dispatcher));

        // The worker grain parks again on the next activation (after ParkAgainAfter on the stopped clock).
        await ParkedAgainAsync(clock, async () => (await host.DispatcherAsync(model).WaitAsync(TimeSpan.FromSeconds(20))).ParkedPolls == 1);
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" }).WaitAsync(TimeSpan.FromSeconds(20));
        var assignment = (await poll.WaitAsync(TimeSpan.FromSeconds(20)))!.Value;
        Assert.Equal(id, assignment.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task AWorkerGrainTheDirectoryDeactivates_EndsItsPoll_SoItsHeartbeatIsAnswered_AndThePollGoesOnInTheNextActivation()
    {
        await using var parked = await ParkedPoll.StartAsync();
        var (host, _, contexts, client, model, worker, workerId, poll) = parked;

        var workerGrain = contexts.Of(host.Grains.GetGrain<IWorkerGrain>(workerId));
        DirectoryFails(workerGrain);

        await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat").WaitAsync(TimeSpan.FromSeconds(20)), HttpStatusCode.OK);
        await host.ParkedAsync(model);
        Assert.NotSame(workerGrain, contexts.Of(host.Grains.GetGrain<IWorkerGrain>(workerId)));
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var assignment = (await poll.WaitAsync(TimeSpan.FromSeconds(20)))!.Value;
        Assert.Equal(id, assignment.GetProperty("job_id").GetInt64());
    }

    /// <summary>A node on a stopped clock that records its activations' contexts, and a worker's HTTP poll parked on it.</summary>
    private sealed record ParkedPoll(GridHost Host, ManualTimeProvider Clock, GrainContexts Contexts, ApiClient Client, string Model,
        ApiClient Worker, long WorkerId, Task<System.Text.Json.JsonElement?> Poll) : IAsyncDisposable
    {
        public static async Task<ParkedPoll> StartAsync()
        {
            var clock = new ManualTimeProvider();
            var contexts = new GrainContexts();
#pragma warning disable CA2000 // The ParkedPoll owns the host and disposes it; a failed start fails the test, which ends the process's use of it.
            var host = await GridHost.StartAsync(time: clock, services: services => services.AddSingleton<IIncomingGrainCallFilter>(contexts));
#pragma warning restore CA2000
            var client = await host.NewAccountAsync();
            var model = ApiClient.Unique();
            var (worker, workerId) = await client.NewWorkerAsync("w", model);
            var poll = worker.PollAsync($"models[]={model}");
            await host.ParkedAsync(model);
            return new ParkedPoll(host, clock, contexts, client, model, worker, workerId, poll);
        }

        public ValueTask DisposeAsync() => Host.DisposeAsync();
    }

    private static void DirectoryFails(IGrainContext activation) =>
        activation.Deactivate(new DeactivationReason(DeactivationReasonCode.DirectoryFailure, "a silo that held its directory entry left (test)"));

    /// <summary>Moves the clock on in steps of a worker grain's pause before parking again, until the poll parked again (well within a slice).</summary>
    private static async Task ParkedAgainAsync(ManualTimeProvider clock, Func<Task<bool>> parked)
    {
        for (var step = 0; !await parked(); step++)
        {
            Assert.True(step < 40, "the poll parked again");
            clock.Advance(TimeSpan.FromMilliseconds(60));
            await Task.Delay(5);
        }
    }

    /// <summary>The context of the activation that took each grain's latest call.</summary>
    private sealed class GrainContexts : IIncomingGrainCallFilter
    {
        private readonly ConcurrentDictionary<GrainId, IGrainContext> _latest = new();

        public Task Invoke(IIncomingGrainCallContext context)
        {
            _latest[context.TargetContext.GrainId] = context.TargetContext;
            return context.Invoke();
        }

        public IGrainContext Of(IAddressable grain) => _latest[grain.GetGrainId()];
    }
}
