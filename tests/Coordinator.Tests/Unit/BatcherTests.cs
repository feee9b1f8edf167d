using System.Collections.Concurrent;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Unit;

public class BatcherTests
{
    /// <summary>A batch function that records each batch and blocks until the test lets that batch finish.</summary>
    private sealed class GatedRun
    {
        public ConcurrentQueue<int[]> Seen { get; } = new();
        public ConcurrentQueue<TaskCompletionSource> Gates { get; } = new();
        public Func<int[], Exception?> Fail { get; set; } = _ => null;

        public async Task<IReadOnlyList<int>> RunAsync(IReadOnlyList<int> items)
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Gates.Enqueue(gate);
            Seen.Enqueue([.. items]);
            await gate.Task;
            if (Fail([.. items]) is { } exception) throw exception;
            return items.Select(i => i * 10).ToList();
        }

        public async Task ReleaseNextAsync()
        {
            TaskCompletionSource? gate = null;
            await Eventually.TrueAsync(() => Gates.TryDequeue(out gate), "a batch is running");
            gate!.SetResult();
        }
    }

    [Fact]
    public async Task ALoneCaller_RunsAtOnce_InABatchOfOne()
    {
        var batcher = new Batcher<int, int>(items => Task.FromResult<IReadOnlyList<int>>(items.Select(i => i + 1).ToList()));
        Assert.Equal(8, await batcher.RunAsync(7));
        Assert.Equal(1, batcher.Batches);
    }

    [Fact]
    public async Task CallersArrivingWhileABatchRuns_ShareTheNextBatch_AndEachGetsItsOwnResult()
    {
        var run = new GatedRun();
        var batcher = new Batcher<int, int>(run.RunAsync, maxBatch: 500, maxInFlight: 1);
        var first = batcher.RunAsync(1);
        await Eventually.TrueAsync(() => !run.Seen.IsEmpty, "the first batch starts");
        var rest = Enumerable.Range(2, 20).Select(i => batcher.RunAsync(i)).ToList();

        await run.ReleaseNextAsync();
        Assert.Equal(10, await first);
        await run.ReleaseNextAsync();
        Assert.Equal(Enumerable.Range(2, 20).Select(i => i * 10), await Task.WhenAll(rest));

        Assert.Equal([[1], [.. Enumerable.Range(2, 20)]], run.Seen.ToArray());
        Assert.Equal(2, batcher.Batches);
    }

    [Fact]
    public async Task ABatchIsCappedAtMaxBatch_AndTheRestRunNext()
    {
        var run = new GatedRun();
        var batcher = new Batcher<int, int>(run.RunAsync, maxBatch: 3, maxInFlight: 1);
        var first = batcher.RunAsync(0);
        var rest = Enumerable.Range(1, 7).Select(i => batcher.RunAsync(i)).ToList();
        for (var i = 0; i < 4; i++) await run.ReleaseNextAsync();
        await first;
        await Task.WhenAll(rest);
        Assert.Equal([[0], [1, 2, 3], [4, 5, 6], [7]], run.Seen.ToArray());
    }

    [Fact]
    public async Task SeveralBatchesRunAtOnce_UpToMaxInFlight()
    {
        var run = new GatedRun();
        var batcher = new Batcher<int, int>(run.RunAsync, maxBatch: 500, maxInFlight: 2);
        var a = batcher.RunAsync(1);
        var b = batcher.RunAsync(2);
        await Eventually.TrueAsync(() => run.Seen.Count == 2, "two batches run together");
        var c = batcher.RunAsync(3);
        var d = batcher.RunAsync(4);
        Assert.Equal(2, run.Seen.Count); // the third batch waits for a free slot
        for (var i = 0; i < 3; i++) await run.ReleaseNextAsync();
        Assert.Equal(new[] { 10, 20, 30, 40 }, await Task.WhenAll(a, b, c, d));
        // The two first batches start on the thread pool together, in either order; the third takes what queued meanwhile.
        var seen = run.Seen.ToArray();
        Assert.Equal([[1], [2]], seen.Take(2).OrderBy(batch => batch[0]));
        Assert.Equal([3, 4], seen[2]);
    }

    [Fact]
    public async Task AFailedBatch_FailsEveryCallerInIt_AndLaterBatchesStillRun()
    {
        var run = new GatedRun { Fail = items => items.Contains(3) ? new InvalidOperationException("boom") : null };
        var batcher = new Batcher<int, int>(run.RunAsync, maxBatch: 500, maxInFlight: 1);
        var first = batcher.RunAsync(1);
        await Eventually.TrueAsync(() => !run.Seen.IsEmpty, "the first batch starts");
        var failing = new[] { batcher.RunAsync(2), batcher.RunAsync(3), batcher.RunAsync(4) };
        await run.ReleaseNextAsync();
        await run.ReleaseNextAsync();

        Assert.Equal(10, await first);
        foreach (var task in failing) Assert.Equal("boom", (await Assert.ThrowsAsync<InvalidOperationException>(() => task)).Message);
        var after = batcher.RunAsync(5);
        await run.ReleaseNextAsync();
        Assert.Equal(50, await after);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ACallerCancelling_StopsOnlyItsOwnWait_AndLeavesTheQueueIfItsBatchHasNotStarted(bool whileItsBatchRuns)
    {
        var run = new GatedRun();
        var batcher = new Batcher<int, int>(run.RunAsync, maxBatch: 500, maxInFlight: 1);
        var first = batcher.RunAsync(1);
        await Eventually.TrueAsync(() => !run.Seen.IsEmpty, "the first batch starts");
        using var hangUp = new CancellationTokenSource();
        var quitter = batcher.RunAsync(2, hangUp.Token);
        var stayer = batcher.RunAsync(3);
        if (whileItsBatchRuns)
        {
            await run.ReleaseNextAsync();
            await Eventually.TrueAsync(() => run.Seen.Count == 2, "the second batch starts");
        }
        await hangUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => quitter);

        for (var i = whileItsBatchRuns ? 1 : 2; i > 0; i--) await run.ReleaseNextAsync();
        Assert.Equal(10, await first);
        Assert.Equal(30, await stayer);
        // Cancelled while queued, its item never ran; cancelled while running, the batch ran it for the others' sake.
        int[][] expected = whileItsBatchRuns ? [[1], [2, 3]] : [[1], [3]];
        Assert.Equal(expected, run.Seen.ToArray());
    }
}
