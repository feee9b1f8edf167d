using System.Text;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace GridWorker.Tests;

/// <summary>One job's chunks against a fake coordinator that answers them as the real one does, or as a test says.</summary>
public sealed class ChunkStreamerTests : IAsyncLifetime
{
    private const long JobId = 7;
    private readonly HttpClient _http = Program.CreateHttpClient();
    private FakeCoordinator _coordinator = null!;

    public async Task InitializeAsync() => _coordinator = await FakeCoordinator.StartAsync();

    public async Task DisposeAsync()
    {
        await _coordinator.DisposeAsync();
        _http.Dispose();
    }

    /// <summary>A streamer for job 7; <paramref name="jobEnded"/> is what it cancels, <paramref name="output"/> where it warns.</summary>
    private ChunkStreamer NewStreamer(CancellationTokenSource jobEnded, TextWriter? output = null) => new(
        new CoordinatorClient(_http, WorkerSettings.NormalizeCoordinator(_coordinator.BaseUrl.ToString()), "vk_live_worker"),
        new Reporter(output ?? TextWriter.Null, json: false, TimeProvider.System),
        JobId,
        jobEnded,
        CancellationToken.None);

    [Fact]
    public async Task TextThatComesWhileAChunkIsInFlight_LeavesAsTheNextChunk_AfterItsAnswer()
    {
        var release = new TaskCompletionSource();
        _coordinator.AnswerChunk = async chunk =>
        {
            if (chunk.Index == 0) await release.Task;
            return null;
        };
        using var jobEnded = new CancellationTokenSource();
        var streamer = NewStreamer(jobEnded);

        streamer.Append("Rows");
        Assert.Equal(new FakeChunk(JobId, 0, "Rows"), await _coordinator.NextChunkAsync());
        streamer.Append(" wait");
        streamer.Append(" in order");
        release.SetResult();
        Assert.Equal(ChunkStreamState.Streaming, await streamer.FinishAsync(sendRest: true));

        Assert.Equal([new FakeChunk(JobId, 1, " wait in order")], _coordinator.ChunksSoFar());
        Assert.Equal("Rows wait in order", _coordinator.StreamedText(JobId));
        Assert.Equal(1, _coordinator.MaxChunksInFlight);
        Assert.False(jobEnded.IsCancellationRequested);
    }

    [Fact]
    public async Task LongText_IsCutIntoChunksOfAtMost64KiB_NeverInsideACharacter()
    {
        var text = string.Concat(Enumerable.Repeat("é😀a", 20_000)); // 140,000 UTF-8 bytes; 😀 is a surrogate pair
        using var jobEnded = new CancellationTokenSource();
        var streamer = NewStreamer(jobEnded);
        streamer.Append(text);
        Assert.Equal(ChunkStreamState.Streaming, await streamer.FinishAsync(sendRest: true));

        var chunks = _coordinator.ChunksSoFar();
        Assert.Equal([0, 1, 2], chunks.Select(c => c.Index));
        Assert.All(chunks, c =>
        {
            Assert.InRange(Encoding.UTF8.GetByteCount(c.Text), 1, ChunkStreamer.MaxChunkBytes);
            Assert.False(char.IsLowSurrogate(c.Text[0]), "a chunk starts inside a surrogate pair");
        });
        Assert.Equal(text, _coordinator.StreamedText(JobId));
    }

    public static TheoryData<int, string> JobEndedAnswers => new()
    {
        { 404, """{"error":"not_found","message":"job 7 is not held by this worker"}""" },
        { 422, """{"error":"invalid_state","message":"job 7 is cancelled: stop working on it"}""" },
    };

    [Theory]
    [MemberData(nameof(JobEndedAnswers))]
    public async Task AnswerThatTheJobEnded_CancelsTheJob_AndSendsNoMore(int status, string body)
    {
        _coordinator.AnswerChunk = _ => Task.FromResult<IResult?>(Results.Text(body, "application/json", statusCode: status));
        using var jobEnded = new CancellationTokenSource();
        var cancelled = new TaskCompletionSource();
        using var onCancel = jobEnded.Token.Register(() => cancelled.SetResult());
        var streamer = NewStreamer(jobEnded);

        streamer.Append("Rows");
        await _coordinator.NextChunkAsync();
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(20));
        streamer.Append(" wait");

        Assert.Equal(ChunkStreamState.JobEnded, await streamer.FinishAsync(sendRest: true));
        Assert.Contains("job 7", streamer.EndedMessage, StringComparison.Ordinal);
        Assert.Empty(_coordinator.ChunksSoFar());
    }

    public static TheoryData<int, string> StopStreamingAnswers => new()
    {
        { 503, """{"error":"unavailable","message":"the node is stopping"}""" },
        { 404, "" }, // a coordinator without the chunks endpoint
        { 422, """{"error":"invalid_request","message":"chunk 0 came before chunk 3: send the chunks in order"}""" },
        { 422, """{"error":"invalid_request","message":"the output of job 7 would pass its size limit: its result would be refused too"}""" },
    };

    [Theory]
    [MemberData(nameof(StopStreamingAnswers))]
    public async Task AnyOtherRefusalOrFailure_StopsTheStreaming_ButNotTheJob(int status, string body)
    {
        _coordinator.AnswerChunk = _ => Task.FromResult<IResult?>(Results.Text(body, "application/json", statusCode: status));
        using var jobEnded = new CancellationTokenSource();
        using var output = new LineWriter();
        var streamer = NewStreamer(jobEnded, output);

        streamer.Append("Rows");
        await _coordinator.NextChunkAsync();
        Assert.Equal(ChunkStreamState.Stopped, await streamer.FinishAsync(sendRest: true));
        streamer.Append(" wait");
        Assert.Equal(ChunkStreamState.Stopped, await streamer.FinishAsync(sendRest: true));

        Assert.Empty(_coordinator.ChunksSoFar());
        Assert.False(jobEnded.IsCancellationRequested);
        Assert.Contains(output.Lines, l => l.Contains($"job 7: chunk 0 could not be sent: the coordinator answered {status}", StringComparison.Ordinal));
    }
}
