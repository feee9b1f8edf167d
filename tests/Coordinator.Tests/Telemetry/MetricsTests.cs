using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using Coordinator.Grains.Telemetry;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Telemetry;

/// <summary>The coordinator's meter, read with a <see cref="MeterListener"/> while real jobs move through a node.</summary>
public sealed class MetricsTests(HostFixture fixture) : IClassFixture<HostFixture>, IDisposable
{
    private readonly ConcurrentQueue<Recorded> _recorded = new();
    private MeterListener? _listener;

    private GridHost Host => fixture.Host;

    private sealed record Recorded(string Instrument, double Value, IReadOnlyDictionary<string, object?> Tags);

    private MeterListener Listener => _listener ??= Listen(_recorded);

    private static MeterListener Listen(ConcurrentQueue<Recorded> queue)
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == CoordinatorMetrics.MeterName) l.EnableMeasurementEvents(instrument);
            },
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            queue.Enqueue(new Recorded(instrument.Name, value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value)));
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.Start();
        return listener;
    }

    public void Dispose() => _listener?.Dispose();

    private double Sum(string instrument, string family) =>
        _recorded.Where(r => r.Instrument == instrument && Equals(r.Tags.GetValueOrDefault("family"), family)).Sum(r => r.Value);

    private int Count(string instrument, string family) =>
        _recorded.Count(r => r.Instrument == instrument && Equals(r.Tags.GetValueOrDefault("family"), family));

    [Fact]
    public async Task SubmitCompleteAndFail_CountByFamily_AndRecordDispatchLatency()
    {
        _ = Listener;
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var family = ApiClient.Unique("tel");
        var model = family + ":7b";
        var (worker, _) = await client.NewWorkerAsync("w", model);

        var completed = await client.SubmitAsync(new { model, model_match = "exact", prompt = "one" });
        var failed = await client.SubmitAsync(new { model, model_match = "exact", prompt = "two" });
        foreach (var id in new[] { completed, failed })
        {
            var assignment = await worker.PollAsync($"models[]={model}");
            Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
            await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        }
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{completed}/result",
            new { output = "ok", output_tokens = 1, duration_ms = 1, model_used = model }), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{failed}/fail", new { error = "out of memory" }), HttpStatusCode.OK);

        Assert.Equal(2, Sum("coordinator.jobs.submitted", family));
        Assert.Equal(1, Sum("coordinator.jobs.completed", family));
        Assert.Equal(1, Sum("coordinator.jobs.failed", family));
        Assert.Equal(2, Count("coordinator.jobs.dispatch_latency", family));
        Assert.All(_recorded.Where(r => r.Instrument == "coordinator.jobs.dispatch_latency" && Equals(r.Tags["family"], family)), r => Assert.True(r.Value >= 0));
        // Tags are the family only: never a job, an account, a key or the full model name.
        Assert.All(_recorded.Where(r => r.Instrument.StartsWith("coordinator.jobs.", StringComparison.Ordinal)),
            r => Assert.Equal(["family"], r.Tags.Keys));
    }

    [Fact]
    public async Task FirstChunk_RecordsTimeToFirstToken()
    {
        _ = Listener;
        var client = await Host.NewAccountAsync();
        var (worker, id, model) = await client.SubmitAndClaimAsync(start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = 0, text = "Hel" }), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = 1, text = "lo" }), HttpStatusCode.OK);

        Assert.Equal(1, Count("coordinator.jobs.time_to_first_token", Coordinator.Grains.ModelNames.FamilyOf(model)));
    }

    [Fact]
    public async Task QueueGauges_ReportParkedPollsByFamily()
    {
        _ = Listener;
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique("tel");
        var model = family + ":1b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        using var cancel = new CancellationTokenSource();
        var poll = worker.PollAsync($"models[]={model}", cancel.Token);
        await Host.ParkedAsync(model);

        Listener.RecordObservableInstruments();
        Assert.Contains(_recorded, r => r.Instrument == "coordinator.dispatch.parked_polls" && Equals(r.Tags["family"], family) && r.Value == 1);
        Assert.Contains(_recorded, r => r.Instrument == "coordinator.dispatch.queued_jobs" && Equals(r.Tags["family"], family));
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => poll);
    }

    [Fact]
    public async Task PendingGauges_ReportTheGridsQueueByFamily_FromTheTable()
    {
        _ = Listener;
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique("tel");
        await client.SubmitAsync(new { model = family + ":3b", model_match = "exact", prompt = "one" });
        await client.SubmitAsync(new { model = family + ":8b", model_match = "exact", prompt = "two" });

        await Host.Get<PendingJobsGauges>().ReadAsync();
        Listener.RecordObservableInstruments();
        Assert.Contains(_recorded, r => r.Instrument == "coordinator.jobs.pending" && Equals(r.Tags["family"], family) && r.Value == 2);
        Assert.Contains(_recorded, r => r.Instrument == "coordinator.jobs.oldest_pending_age" && Equals(r.Tags["family"], family) && r.Value >= 0);
    }

    [Fact]
    public void FamilyTag_IsBounded()
    {
        // An instance of its own: filling the node's would turn the other tests' families into "other".
        using var meters = new PrivateMeters();
        var metrics = new CoordinatorMetrics(meters);
        Assert.Equal(CoordinatorMetrics.AnyFamily, metrics.FamilyTag(null).Value);
        Assert.Equal(CoordinatorMetrics.OtherFamily, metrics.FamilyTag(new string('x', CoordinatorMetrics.MaxFamilyLength + 1)).Value);
        var values = Enumerable.Range(0, CoordinatorMetrics.MaxFamilies + 10).Select(_ => metrics.FamilyTag(ApiClient.Unique("b")).Value).ToList();
        Assert.Contains(CoordinatorMetrics.OtherFamily, values);
        Assert.True(values.Distinct().Count() <= CoordinatorMetrics.MaxFamilies + 1);
    }

    /// <summary>A meter factory of one test's own.</summary>
    private sealed class PrivateMeters : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose() => _meters.ForEach(meter => meter.Dispose());
    }
}
