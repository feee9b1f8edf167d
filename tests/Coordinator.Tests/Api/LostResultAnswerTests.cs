using System.Net;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;

namespace Coordinator.Tests.Api;

/// <summary>
/// A worker's result reaches a silo whose call to the worker grain fails as the grain's silo stops or dies (a rolling
/// restart). The silo sends it once more, and the conditional completion decides: recorded by the first call or by the
/// second, the worker hears it was accepted (sent again by the worker, it would be refused: 422, the job being completed,
/// and the worker would think its work lost), and it is recorded once. The failing call is made by a grain call filter.
/// </summary>
public sealed class LostResultAnswerTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AResultWhoseGrainCallFailed_IsAccepted_AndRecordedOnce_WhetherOrNotTheFailedCallRecordedIt(bool recordedBeforeTheFailure)
    {
        var fail = new FailOneResultCall { AfterItRan = recordedBeforeTheFailure };
        await using var host = await GridHost.StartAsync(services: services => services.AddSingleton<IOutgoingGrainCallFilter>(fail));
        var client = await host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);

        var result = new { output = "ok", output_tokens = 3, duration_ms = 1 };
        using var answer = await worker.PostAsync($"worker/jobs/{id}/result", result);
        Assert.Equal(1, fail.Failed);
        Assert.Equal("accepted", (await ApiClient.ExpectAsync(answer, HttpStatusCode.OK)).GetProperty("status").GetString());
        Assert.Equal(recordedBeforeTheFailure ? 2 : 1, fail.Ran);
        var job = await client.GetJobAsync(id);
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal("ok", job.GetProperty("output").GetString());
        // Once: the worker's credits are those of one result of 3 tokens.
        await using var connection = await host.OpenConnectionAsync();
        Assert.Equal(1L, await Dapper.SqlMapper.QuerySingleAsync<long>(connection, "SELECT count(*) FROM jobs WHERE id = @id AND status = 'completed' AND output_tokens = 3", new { id }));
    }

    /// <summary>Fails the first result call to a worker grain as a silo that left would, after it ran or before.</summary>
    private sealed class FailOneResultCall : IOutgoingGrainCallFilter
    {
        private int _failed;
        private int _ran;

        public bool AfterItRan { get; init; }

        public int Failed => Volatile.Read(ref _failed);

        /// <summary>How many result calls reached the worker grain.</summary>
        public int Ran => Volatile.Read(ref _ran);

        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            var result = context.InterfaceMethod?.Name == nameof(IWorkerGrain.CompleteAsync);
            var mine = result && Interlocked.CompareExchange(ref _failed, 1, 0) == 0;
            if (!mine || AfterItRan)
            {
                if (result) Interlocked.Increment(ref _ran);
                await context.Invoke();
            }
            if (mine) throw new SiloUnavailableException("the worker grain's silo left with the call in flight (test)");
        }
    }
}
