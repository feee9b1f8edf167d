using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using static Coordinator.Tests.Cluster.SiloCrashTests;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// A silo that stops gracefully makes every other silo deactivate the grains whose directory entry it held (Orleans'
/// default grain directory), wherever they live. An activation being deactivated runs no new call until the calls it
/// runs have ended: a dispatcher holding parked polls took no submission, and no cancellation of those polls, until they
/// ended, so its family stalled for a poll window (30–39 s gaps in the rolling bench, submissions failing after Orleans'
/// 30 s response timeout). Polls now reach the grains in slices (WorkerGrain.PollSlice) and a dispatcher holds none past
/// its slice, so such a stall lasts a few seconds.
/// </summary>
[Collection(Alone.Name)]
public sealed class OtherSiloStopTests
{
    /// <summary>
    /// Families, each its own dispatcher grain. Which of them had their directory entry on the silo that stops depends on
    /// hashes; with this many, some of those living on the silos that stay almost surely did (without the slices this test
    /// failed: a submission answered 503 after 30 s).
    /// </summary>
    private const int Families = 48;

    private static readonly Dictionary<string, string> Settings = new()
    {
        ["Dispatch__LongPollTimeout"] = "00:00:40",
    };

    [Fact]
    public async Task AfterASiloStops_PollsParkedThroughTheOthers_GetJobsSubmittedThenAtOnce()
    {
        var database = await TestDatabase.CreateAsync();
        var silos = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => SiloProcess.StartAsync(database, Settings)));
        try
        {
            var (stopping, staying) = (silos[2], silos[..2]);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(90) };
            var key = await NewUnlimitedAccountAsync(http, staying[0], database);
            var models = Enumerable.Range(0, Families).Select(_ => ApiClient.Unique()).ToList();
            var workers = new List<string>();
            for (var i = 0; i < Families; i++) workers.Add(await NewWorkerKeyAsync(http, staying[i % 2], key, models[i]));

            // One poll per family, through the silos that stay (their worker grains live there); the dispatchers are
            // placed on all three. Each reaches its dispatcher within milliseconds of its front end counting it, long
            // before the stopping silo's stop gets to the directory.
            var polls = models.Select((model, i) =>
                SendAsync(http, staying[i % 2], workers[i], HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, CancellationToken.None)).ToList();
            while (await GracefulStopTests.ParkedPollsAsync(staying[0]) + await GracefulStopTests.ParkedPollsAsync(staying[1]) < Families)
            {
                await Task.Delay(20);
            }

            stopping.Terminate();
            using (var exit = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            {
                await stopping.WaitForExitAsync(exit.Token);
            }
            Assert.True(stopping.ExitCode == 0, $"the stopping silo exited {stopping.ExitCode}:\n{stopping.Log}");

            // Within the polls' 40 s window every family takes a submission and hands it to its poll (the HTTP poll, called
            // in slices, outlives a slice: the job reaches the same request).
            var submitted = new List<long>();
            for (var i = 0; i < Families; i++)
            {
                using var created = await SendAsync(http, staying[i % 2], key, HttpMethod.Post, "jobs",
                    new { model = models[i], model_match = "exact", prompt = "hi" }, CancellationToken.None);
                var body = await created.Content.ReadAsStringAsync();
                Assert.True(created.StatusCode == HttpStatusCode.Created, $"the submission of family {i} got {(int)created.StatusCode} {body}");
                submitted.Add(JsonDocument.Parse(body).RootElement.GetProperty("job_id").GetInt64());
            }
            for (var i = 0; i < Families; i++)
            {
                using var answer = await polls[i];
                Assert.True(answer.StatusCode == HttpStatusCode.OK, $"the poll of family {i} got {(int)answer.StatusCode}, not its job");
                Assert.Equal(submitted[i], (await answer.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("job_id").GetInt64());
            }
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }
}
