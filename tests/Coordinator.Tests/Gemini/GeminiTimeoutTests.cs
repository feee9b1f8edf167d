using System.Net;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Gemini;

/// <summary>
/// A conversation reply or an image that no worker takes: with a worker online that never polls, the client hears a clear
/// error once the job's timeout (<c>Lightning:Gemini:TimeoutSeconds</c>, 300 s) has passed on the fake clock, the job is
/// cancelled, and nothing hangs.
/// </summary>
public class GeminiTimeoutTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AReplyNoWorkerTakes_EndsTheStreamWithAnError_AndItsJobIsCancelled()
    {
        var grid = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        await grid.NewWorkerAsync("idle", model);
        var client = Gemini.Client(Host, grid.Key);
        var id = await Gemini.NewConversationAsync(client);

        await using var stream = await Gemini.SendAsync(client, id, new { content = "Anyone there?", model });
        var reading = Gemini.NextAsync(stream);
        await AdvanceUntilAsync(reading);

        var error = (await reading).GetProperty("error").GetString();
        Assert.Matches("^no worker took the reply's grid job [0-9]+ within 300 seconds; it was cancelled$", error);
        var job = Assert.Single((await ApiClient.ExpectAsync(await grid.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
        Assert.Equal("cancelled", job.GetProperty("status").GetString());
        // Only the user's message is stored: no empty reply.
        Assert.Single((await Gemini.MessagesAsync(client, id)).EnumerateArray());
    }

    [Fact]
    public async Task AnImageNoWorkerTakes_Is504_AndItsJobIsCancelled()
    {
        var grid = await Host.NewAccountAsync();
        await Gemini.NewFamilyWorkerAsync(grid, "image:sd-idle");
        var client = Gemini.Client(Host, grid.Key);

        var answer = client.PostAsync("generate-image", new { prompt = "a fox nobody draws" });
        await Eventually.TrueAsync(async () => (await ApiClient.ExpectAsync(await grid.GetAsync("jobs"), HttpStatusCode.OK)).GetArrayLength() == 1,
            "the request made its job");
        await AdvanceUntilAsync(answer);

        Assert.Matches("^no worker took image job [0-9]+ within 300 seconds; it was cancelled$", await Gemini.ErrorAsync(await answer, HttpStatusCode.GatewayTimeout));
        var job = Assert.Single((await ApiClient.ExpectAsync(await grid.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
        Assert.Equal("cancelled", job.GetProperty("status").GetString());
    }

    /// <summary>
    /// Moves the clock past the timeout, then on until <paramref name="waiting"/> ends: the reader looks at the clock each
    /// time its job's grain has waited a while for text.
    /// </summary>
    private async Task AdvanceUntilAsync(Task waiting)
    {
        fixture.Clock.Advance(TimeSpan.FromSeconds(300));
        await Eventually.TrueAsync(() =>
        {
            fixture.Clock.Advance(TimeSpan.FromSeconds(16));
            return waiting.IsCompleted;
        }, "the request ends");
    }
}
