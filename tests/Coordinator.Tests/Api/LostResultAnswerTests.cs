using System.Net;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;

namespace Coordinator.Tests.Api;

/// <summary>
/// A worker's result reaches a silo whose call to the worker grain fails as the grain's silo stops or dies (a rolling
/// restart). If the result was recorded before the answer was lost, the worker hears it was accepted: sent again, it
/// would be refused (422, the job being completed) and the worker would think its work was lost. If it was not recorded,
/// the silo answers 503 and the worker sends it again. The failing call is made by a grain call filter.
/// </summary>
public sealed class LostResultAnswerTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AResultWhoseGrainCallFailed_IsAccepted_IfItWasRecorded_ElseAnswered503AndAcceptedWhenSentAgain(bool recordedBeforeTheFailure)
    {
        var fail = new FailOneResultCall { AfterItRan = recordedBeforeTheFailure };
        await using var host = await GridHost.StartAsync(services: services => services.AddSingleton<IOutgoingGrainCallFilter>(fail));
        var client = await host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);

        var result = new { output = "ok", output_tokens = 3, duration_ms = 1 };
        using var first = await worker.PostAsync($"worker/jobs/{id}/result", result);
        Assert.Equal(1, fail.Failed);
        if (recordedBeforeTheFailure)
        {
            Assert.Equal("accepted", (await ApiClient.ExpectAsync(first, HttpStatusCode.OK)).GetProperty("status").GetString());
        }
        else
        {
            await ApiClient.ExpectAsync(first, HttpStatusCode.ServiceUnavailable);
            Assert.Equal("running", (await client.GetJobAsync(id)).GetProperty("status").GetString());
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", result), HttpStatusCode.OK);
        }
        var job = await client.GetJobAsync(id);
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal("ok", job.GetProperty("output").GetString());
    }

    /// <summary>Fails the first result call to a worker grain as a silo that left would, after it ran or before.</summary>
    private sealed class FailOneResultCall : IOutgoingGrainCallFilter
    {
        private int _failed;

        public bool AfterItRan { get; init; }

        public int Failed => Volatile.Read(ref _failed);

        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            var mine = context.InterfaceMethod?.Name == nameof(IWorkerGrain.CompleteAsync) && Interlocked.CompareExchange(ref _failed, 1, 0) == 0;
            if (!mine || AfterItRan) await context.Invoke();
            if (mine) throw new SiloUnavailableException("the worker grain's silo left with the call in flight (test)");
        }
    }
}
