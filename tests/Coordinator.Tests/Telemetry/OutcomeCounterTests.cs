using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using Coordinator.Grains.Telemetry;
using Coordinator.Grains.Webhooks;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Webhooks;

namespace Coordinator.Tests.Telemetry;

/// <summary>
/// The webhook and quota counters, read with a <see cref="MeterListener"/> that hears only this class's node (its meters
/// come from the node's own <see cref="IMeterFactory"/>, so other tests' nodes in the same process do not add to them).
/// </summary>
public sealed class OutcomeCounterTests : IAsyncLifetime, IDisposable
{
    private readonly ManualTimeProvider _clock = new();
    private readonly ConcurrentQueue<(string Instrument, long Value, string? Outcome)> _recorded = new();
    private WebhookReceiver _receiver = null!;
    private GridHost _host = null!;
    private MeterListener? _listener;

    public async Task InitializeAsync()
    {
        _receiver = await WebhookReceiver.StartAsync();
        _host = await GridHost.StartAsync(time: _clock, settings: new Dictionary<string, string?>
        {
            // The receiver is on loopback, which the SSRF guard refuses unless told otherwise; the test sends by hand.
            ["Webhooks:AllowPrivateNetworks"] = "true",
            ["Webhooks:RunSender"] = "false",
        });
        var meters = _host.Get<IMeterFactory>();
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == CoordinatorMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, meters)) listener.EnableMeasurementEvents(instrument);
            },
        };
        _listener!.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? outcome = null;
            foreach (var tag in tags) if (tag.Key == "outcome") outcome = tag.Value as string;
            _recorded.Enqueue((instrument.Name, value, outcome));
        });
        _listener!.Start();
    }

    public async Task DisposeAsync()
    {
        _listener?.Dispose();
        await _host.DisposeAsync();
        await _receiver.DisposeAsync();
    }

    public void Dispose() => _listener?.Dispose();

    private long Sum(string instrument, string? outcome = null) =>
        _recorded.Where(r => r.Instrument == instrument && (outcome is null || r.Outcome == outcome)).Sum(r => r.Value);

    private async Task<long> CompletedJobWithWebhookAsync()
    {
        var client = await _host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(new { webhook_url = _receiver.Url.ToString() }, start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "done", output_tokens = 3, duration_ms = 9 }), HttpStatusCode.OK);
        return id;
    }

    [Fact]
    public async Task WebhookAttempts_CountDelivered_Retry_AndFailed()
    {
        const string attempts = "coordinator.webhooks.attempts";
        await CompletedJobWithWebhookAsync();
        Assert.Equal(1, (await _host.Get<WebhookSender>().RunOnceAsync()).Delivered);
        Assert.Equal(1, Sum(attempts, "delivered"));
        Assert.Equal(0, Sum(attempts, "retry") + Sum(attempts, "failed"));

        // A receiver that answers 500: a retry, then, once the delivery is older than Webhooks:RetryFor, given up.
        _receiver.Answer(500, 500);
        await CompletedJobWithWebhookAsync();
        Assert.Equal(1, (await _host.Get<WebhookSender>().RunOnceAsync()).Retrying);
        Assert.Equal(1, Sum(attempts, "retry"));
        _clock.Advance(TimeSpan.FromHours(25));
        Assert.Equal(1, (await _host.Get<WebhookSender>().RunOnceAsync()).Failed);
        Assert.Equal(1, Sum(attempts, "failed"));
        Assert.Equal(1, Sum(attempts, "delivered"));
    }

    [Fact]
    public async Task QuotaHolds_CountTheAccount_AndTheJobsItHeld()
    {
        var client = await _host.NewAccountOnPlanAsync(null, 1000);
        var model = ApiClient.Unique();
        var first = await client.SubmitAsync(new { model, prompt = "big" });
        await client.SubmitAsync(new { model, prompt = "next" });
        await client.SubmitAsync(new { model, prompt = "and next" });
        var (worker, _) = await client.NewWorkerAsync("w", model);
        Assert.Equal(first, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(0, Sum("coordinator.quota.holds"));

        // The first job's tokens reach the plan's daily limit: the account is held, with its two pending jobs.
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{first}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{first}/result",
            new { output = "o", input_tokens = 100, output_tokens = 900, duration_ms = 5 }), HttpStatusCode.OK);
        Assert.Equal(1, Sum("coordinator.quota.holds"));
        Assert.Equal(2, Sum("coordinator.quota.jobs_held"));
    }
}
