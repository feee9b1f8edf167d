using System.Net;
using System.Net.Http.Json;
using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.Hosting;
using Orleans.Runtime;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// The rolling-restart stall of issue #19: a worker polls through one silo while its worker grain lives on another, and
/// that silo goes away with the answer to the poll in flight. The job claimed for the poll must not wait for the claim
/// lease: the front end that took the poll gives back what was claimed for it, and a worker grain whose silo is stopping
/// takes no poll at all.
/// </summary>
[Collection(Alone.Name)]
public sealed class LostPollAnswerTests
{
    [Fact]
    public async Task APollWhoseWorkerGrainsSiloDies_AfterAJobWasClaimedForIt_Answers204_AndTheJobIsDispatchedAgainAtOnce()
    {
        // X: an in-process node (front end and the family's dispatcher), with no duties, so no claim lease ever runs out
        // here. S: a silo process that holds the worker grain and is killed (SIGKILL) while the poll through X waits on it.
        await using var front = await GridHost.StartAsync();
        await using var doomed = await SiloProcess.StartAsync(front.ConnectionString);
        var membership = front.Get<IClusterMembershipService>();
        await Eventually.TrueAsync(() => membership.CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active) == 2,
            "the in-process node sees both silos active", 30_000);
        var management = front.Grains.GetGrain<IManagementGrain>(0);
        var frontSilo = front.Get<ILocalSiloDetails>().SiloAddress;

        // A family whose dispatcher lives on X (placement may prefer the calling silo, or not: the first that landed there).
        var model = await ModelWithDispatcherOnAsync(front.Grains, management, frontSilo, attempts: 100);
        Assert.Equal(frontSilo, await SiloOfAsync(management, front.Grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(model))));

        // The worker registers through S, so its grain lives there; it then polls through X.
        var client = await front.NewAccountAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var (workerKey, workerId) = await RegisterThroughAsync(http, doomed, client, model);
        var workerGrain = front.Grains.GetGrain<IWorkerGrain>(workerId);
        Assert.Equal(doomed.SiloPort, (await SiloOfAsync(management, workerGrain))?.Endpoint.Port);
        var worker = front.WithKey(workerKey);
        var poll = worker.GetAsync($"worker/jobs/next?models[]={model}");
        await front.ParkedAsync(model);

        // S dies with the poll parked; before it is known dead, a job is handed to that poll (claimed for it in the
        // database) and the answer goes to a silo that is gone.
        doomed.Kill();
        var submitted = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { model, model_match = "exact", prompt = "p" }), HttpStatusCode.Created);
        var id = submitted.GetProperty("job_id").GetInt64();
        Assert.Equal("claimed", submitted.GetProperty("status").GetString());

        // X's call fails once S is declared dead: the worker hears 204 (not an error) and polls again.
        using (var answer = await poll.WaitAsync(TimeSpan.FromSeconds(60)))
        {
            Assert.Equal(HttpStatusCode.NoContent, answer.StatusCode);
        }
        // The job was given back by the poll it was claimed for, not by a lease (no duties run here), and reaches the
        // worker's next poll, its grain now on X.
        var assignment = await worker.PollAsync($"models[]={model}").WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(1, assignment.Value.GetProperty("attempt").GetInt32());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task AWorkerGrain_TakesNoPoll_OnceItsSilosStopBegan_EvenInAnActivationMadeSince()
    {
        // The stopping node drains long enough (not ready, still a silo) for the test to poll it while its stop has begun.
        await using var stopping = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Shutdown:DrainDelay"] = "00:00:15" });
        await using var staying = await GridHost.StartAsync(stopping.ConnectionString);
        await Eventually.TrueAsync(() => stopping.IsActive && staying.IsActive, "both silos are active");
        var management = staying.Grains.GetGrain<IManagementGrain>(0);
        var stayingSilo = staying.Get<ILocalSiloDetails>().SiloAddress;

        // A family whose dispatcher lives on the silo that stays if placement allows (best effort), with a job waiting in
        // it: a poll that reached it would be served at once.
        var model = await ModelWithDispatcherOnAsync(staying.Grains, management, stayingSilo, attempts: 20);
        var client = await stopping.NewAccountAsync();
        var (_, workerId) = await client.NewWorkerAsync("w", model);
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var capabilities = new Capabilities([model], [], false);

        // The stop begins (the host's stopping token; the silo itself stays up, as it does while a stop drains).
        stopping.Get<IHostApplicationLifetime>().StopApplication();
        var worker = stopping.Grains.GetGrain<IWorkerGrain>(workerId);
        Assert.Null(await worker.NextJobAsync(Guid.NewGuid(), capabilities).WaitAsync(TimeSpan.FromSeconds(10)));

        // The activation that was there lets go; one made now (placed on the calling silo, the stopping one) takes no
        // poll either, and lets go in turn.
        await Eventually.TrueAsync(async () => await SiloOfAsync(management, worker) is null, "the worker grain's activation let go");
        Assert.Null(await worker.NextJobAsync(Guid.NewGuid(), capabilities).WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.Equal("pending", (await client.GetJobAsync(id)).GetProperty("status").GetString());
        await using var connection = await staying.OpenConnectionAsync();
        Assert.Null(await connection.QuerySingleAsync<long?>("SELECT worker_id FROM jobs WHERE id = @id", new { id }));
    }

    /// <summary>A new model whose family's dispatcher was activated on <paramref name="silo"/>, else the last one tried.</summary>
    private static async Task<string> ModelWithDispatcherOnAsync(IGrainFactory grains, IManagementGrain management, SiloAddress silo, int attempts)
    {
        var model = "";
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            model = ApiClient.Unique();
            var dispatcher = grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(model));
            await dispatcher.StatsAsync();
            if (await SiloOfAsync(management, dispatcher) == silo) break;
        }
        return model;
    }

    /// <summary>The silo of a grain's activation, or null when it has none.</summary>
    private static async Task<SiloAddress?> SiloOfAsync(IManagementGrain management, IAddressable grain)
    {
        var grainId = grain.GetGrainId();
        var activations = await management.GetDetailedGrainStatistics();
        return activations.FirstOrDefault(a => a.GrainId == grainId)?.SiloAddress;
    }

    private static async Task<(string Key, long WorkerId)> RegisterThroughAsync(HttpClient http, SiloProcess silo, ApiClient account, string model)
    {
        var created = await ApiClient.ExpectAsync(await account.PostAsync("keys", new { name = "w" }), HttpStatusCode.Created);
        var key = created.GetProperty("key").GetString()!;
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(silo.BaseAddress, "worker/register"))
        {
            Content = JsonContent.Create(new { name = "w", agent_version = "test", platform = "linux/amd64", models = new[] { new { name = model, serves_family = false } } }),
        };
        request.Headers.Authorization = new("Bearer", key);
        using var response = await http.SendAsync(request);
        var registered = await ApiClient.ExpectAsync(response, HttpStatusCode.Created);
        return (key, registered.GetProperty("worker_id").GetInt64());
    }
}
